"""Every reason Headwater gives for a message that stops or fails, in one place.

Users search Segment's docs by these codes (Delivery Overview, Event Delivery), so Segment's
codes are used verbatim wherever Segment has one; Headwater's own codes are for cases Segment's
tables do not name, and each is recorded in ``docs/decisions.md``. The blocks follow the data
flow: ingest (*Failed on ingest*), routing to one destination instance (*Filtered at
destination*), then delivery (Event Delivery's ``errors.discarded.<code>`` and
``errors.awaiting-retry.<code>``).
"""

from __future__ import annotations

from typing import Final

# --- Ingest: Segment's discard codes (Delivery Overview, "Failed on ingest") -------------------

EMPTY_BATCH: Final = "empty_batch"
EMPTY_BATCH_RESULT: Final = "empty_batch_result"
MULTI_USER_ERROR: Final = "multi_user_error"
NO_USER_ANON_ID: Final = "no_user_anon_id"
ID_REQUIRED: Final = "id_required"
ID_NOT_STRING: Final = "id_not_string"
EVENT_NOT_DEFINED: Final = "event_not_defined"
EVENT_NOT_STRING: Final = "event_not_string"
PROPERTIES_NOT_OBJECT: Final = "properties_not_object"
TRAITS_NOT_OBJECT: Final = "traits_not_object"
NAME_NOT_STRING: Final = "name_not_string"
CATEGORY_NOT_STRING: Final = "category_not_string"
CONSENT_CATEGORYPREFERENCES_SHOULD_EXIST: Final = "consent_categorypreferences_should_exist"
CONSENT_CATEGORYPREFERENCES_SHOULD_BE_OBJECT: Final = "consent_categorypreferences_should_be_object"
CONSENT_CATEGORYPREFERENCES_FIELDS_SHOULD_BE_BOOL: Final = (
    "consent_categorypreferences_fields_should_be_bool"
)
DEVICE_ADVERTISINGID_SHOULD_BE_STRING: Final = "device_advertisingid_should_be_string"
CONSENT_VERSION_SHOULD_BE_NUMBER: Final = "consent_version_should_be_number"
CONSENT_NEEDS_ANONYMOUS_ID_SET: Final = "consent_needs_anonymous_id_set"
ANONYMOUS_ID_INVALID: Final = "anonymous_id_invalid"
SOURCE_DISABLED: Final = "source_disabled"
LOCKED_WORKSPACE: Final = "locked_workspace"
BAD_REQUEST: Final = "bad_request"
UNKNOWN_SOURCE: Final = "unknown_source"
PROJECT_NOT_FOUND: Final = "project_not_found"
TOO_MANY_REQUESTS: Final = "too_many_requests"

SEGMENT_CODES: Final = frozenset(
    {
        EMPTY_BATCH,
        EMPTY_BATCH_RESULT,
        MULTI_USER_ERROR,
        NO_USER_ANON_ID,
        ID_REQUIRED,
        ID_NOT_STRING,
        EVENT_NOT_DEFINED,
        EVENT_NOT_STRING,
        PROPERTIES_NOT_OBJECT,
        TRAITS_NOT_OBJECT,
        NAME_NOT_STRING,
        CATEGORY_NOT_STRING,
        CONSENT_CATEGORYPREFERENCES_SHOULD_EXIST,
        CONSENT_CATEGORYPREFERENCES_SHOULD_BE_OBJECT,
        CONSENT_CATEGORYPREFERENCES_FIELDS_SHOULD_BE_BOOL,
        DEVICE_ADVERTISINGID_SHOULD_BE_STRING,
        CONSENT_VERSION_SHOULD_BE_NUMBER,
        CONSENT_NEEDS_ANONYMOUS_ID_SET,
        ANONYMOUS_ID_INVALID,
        SOURCE_DISABLED,
        LOCKED_WORKSPACE,
        BAD_REQUEST,
        UNKNOWN_SOURCE,
        PROJECT_NOT_FOUND,
        TOO_MANY_REQUESTS,
    }
)

# --- Ingest: Headwater's discard codes (Segment's table has none for these) ---------------------

TOO_MANY_MESSAGES: Final = "too_many_messages"  # batch item past the 2,500th
INVALID_TYPE: Final = "invalid_type"  # batch item without one of the six Spec types
MESSAGE_TOO_LARGE: Final = "message_too_large"  # batch item over 32 KB of JSON
MESSAGE_ID_INVALID: Final = "message_id_invalid"  # not a string or number, or over 100 chars
GROUP_ID_REQUIRED: Final = "group_id_required"  # group call without a usable groupId
PREVIOUS_ID_REQUIRED: Final = "previous_id_required"  # alias call without a usable previousId

HEADWATER_CODES: Final = frozenset(
    {
        TOO_MANY_MESSAGES,
        INVALID_TYPE,
        MESSAGE_TOO_LARGE,
        MESSAGE_ID_INVALID,
        GROUP_ID_REQUIRED,
        PREVIOUS_ID_REQUIRED,
    }
)

ALL_CODES: Final = SEGMENT_CODES | HEADWATER_CODES

# --- Protocols and schema controls (Delivery Overview, "Filtered at source") -----------------
# Headwater's codes: Segment shows these events as blocked without a code of its own.

PROTOCOLS_UNPLANNED_EVENT: Final = "protocols_unplanned_event"  # track.allowUnplannedEvents
PROTOCOLS_VIOLATIONS: Final = "protocols_violations"  # track.allowEventOnViolations
PROTOCOLS_COMMON_SCHEMA: Final = "protocols_common_schema"  # commonEventOnViolations: BLOCK
SCHEMA_BLOCKED_EVENT: Final = "schema_blocked_event"  # a schema control (no plan connected)

# --- Privacy (Delivery Overview, "Filtered at source") -----------------------------------------
# Suppressed by a regulation (SUPPRESS_ONLY, SUPPRESS_WITH_DELETE…): Segment drops these
# silently; Headwater counts them, under a code that says nothing of whose they were.
SUPPRESSED: Final = "suppressed"

# --- Identity resolution (Unify) -------------------------------------------------------------
# Profiles Insights' names, verbatim (spec/unify-engage.md §2.7): an error leaves the event
# unresolved; a violation leaves one identifier out (or one merge undone) and the event resolves.

NO_MATCHING_IDENTIFIERS: Final = "No matching identifiers on event"
ID_VALUE_BLOCKED: Final = "ID value blocked"
IDENTIFIER_VALUE_LIMIT_EXCEEDED: Final = "Identifier value limit exceeded"
IDENTIFIER_VALUE_TIME_LIMIT_EXCEEDED: Final = "Identifier value time limit exceeded"
PROFILE_MERGE_LIMIT_EXCEEDED: Final = "Profile merge limit exceeded"
IDENTIFIER_MAPPING_LIMIT_EXCEEDED: Final = "Identifier mapping limit exceeded"

INSIGHTS_REASONS: Final = frozenset(
    {
        NO_MATCHING_IDENTIFIERS,
        ID_VALUE_BLOCKED,
        IDENTIFIER_VALUE_LIMIT_EXCEEDED,
        IDENTIFIER_VALUE_TIME_LIMIT_EXCEEDED,
        PROFILE_MERGE_LIMIT_EXCEEDED,
        IDENTIFIER_MAPPING_LIMIT_EXCEEDED,
    }
)

# Unify's ingestion drops (§2.6): Segment drops these silently, before resolution, and Profiles
# Insights does not show them; Headwater's codes, so they can still be counted.
UNIFY_MESSAGE_ID_TOO_LONG: Final = "unify_message_id_too_long"  # over 100 characters
UNIFY_GROUP_ID_TOO_LONG: Final = "unify_group_id_too_long"  # over 500 characters
UNIFY_GROUP_ID_EMPTY: Final = "unify_group_id_empty"  # groupId / context.groupId ""
UNIFY_TOO_MANY_PROPERTIES: Final = "unify_too_many_properties"  # over 300
UNIFY_TOO_MANY_TRAITS: Final = "unify_too_many_traits"  # identify: 300 or more; group: over 300

# --- User subscriptions (Engage, spec/unify-engage.md §18) -----------------------------------
# Segment's error codes of a subscription CSV's error report, verbatim, and Headwater's own for
# what an Identify's ``context.messaging_subscriptions`` can get wrong that a CSV cannot. A
# refused item is a Profiles Insights violation under its code; a CSV row's also goes in its
# upload's error report.

INVALID_EMAIL: Final = "INVALID_EMAIL"
INVALID_PHONE: Final = "INVALID_PHONE"
INVALID_SUBSCRIPTION_STATUS: Final = "INVALID_SUBSCRIPTION_STATUS"
CONFIGURATION_ERROR: Final = "CONFIGURATION_ERROR"  # a row's subscription group was deleted
SYSTEM_ERROR: Final = "SYSTEM_ERROR"  # a row that could not be sent
UNABLE_TO_SUBSCRIBE: Final = "UNABLE_TO_SUBSCRIBE"  # an SMS number unsubscribed (STOP)
GLOBAL_STATE_NOT_SUBSCRIBED: Final = "GLOBAL_STATE_NOT_SUBSCRIBED"
INVALID_SUBSCRIPTION: Final = "INVALID_SUBSCRIPTION"  # not an object, no key, groups off EMAIL
INVALID_SUBSCRIPTION_TYPE: Final = "INVALID_SUBSCRIPTION_TYPE"  # not EMAIL, SMS or WhatsApp
SUBSCRIPTION_GROUP_NOT_FOUND: Final = "SUBSCRIPTION_GROUP_NOT_FOUND"  # no such group in the space

SUBSCRIPTION_CODES: Final = frozenset(
    {
        INVALID_EMAIL,
        INVALID_PHONE,
        INVALID_SUBSCRIPTION_STATUS,
        CONFIGURATION_ERROR,
        SYSTEM_ERROR,
        UNABLE_TO_SUBSCRIBE,
        GLOBAL_STATE_NOT_SUBSCRIBED,
        INVALID_SUBSCRIPTION,
        INVALID_SUBSCRIPTION_TYPE,
        SUBSCRIPTION_GROUP_NOT_FOUND,
    }
)

# --- Routing: why an accepted event does not go to one destination instance -------------------

UNSUPPORTED_EVENT_TYPE: Final = "UNSUPPORTED_EVENT_TYPE"  # the destination lacks the method
FILTERED_BY_INTEGRATIONS_OBJECT: Final = "FILTERED_BY_INTEGRATIONS_OBJECT"
# A Protocols transformation with ``drop`` matched the event (source or destination scope).
DROPPED_BY_TRANSFORMATION: Final = "DROPPED_BY_TRANSFORMATION"
FILTERED_BY_RULES: Final = "FILTERED_BY_RULES"  # a destination filter: FILTERED_BY_RULES:<id>
FILTER_ERROR: Final = "INTERNAL"  # Segment's code when a filter has no answer for an event
NO_MATCHING_MAPPING: Final = "NO_MATCHING_MAPPING"  # an Actions destination, no mapping matches
# An insert function threw DropEvent (§11.4): Segment's words in Delivery Overview, verbatim.
FILTERED_AT_INSERT_FUNCTION: Final = "Filtered at insert function"
# A category the instance is mapped to is not true in context.consent.categoryPreferences (§12.3):
# Segment's own words in Delivery Overview, kept verbatim as the code.
FILTERED_BY_END_USER_CONSENT: Final = "Filtered by end user consent"
# Counter steps and notes of the router (Delivery Overview's "Filtered at destination").
FILTERED_AT_DESTINATION: Final = "filtered_at_destination"
UNKNOWN_INTEGRATION: Final = "unknown_integration"  # a note per source, not a filter

# --- Delivery: Segment's integration error codes ----------------------------------------------

MESSAGE_REJECTED: Final = "MESSAGE_REJECTED"  # the message lacks what the destination needs
INVALID_SETTINGS: Final = "INVALID_SETTINGS"  # the instance's settings cannot serve it
RETRY_REQUESTED: Final = "RETRY"  # the destination's own answer asks for another attempt
# Connection problems, named as Segment's integration error codes name them: retried.
ECONNREFUSED: Final = "ECONNREFUSED"
ECONNRESET: Final = "ECONNRESET"
ECONNABORTED: Final = "ECONNABORTED"
ETIMEDOUT: Final = "ETIMEDOUT"
ENOTFOUND: Final = "ENOTFOUND"
EHOSTUNREACH: Final = "EHOSTUNREACH"
EAI_AGAIN: Final = "EAI_AGAIN"
CONNECTION_ERRORS: Final = frozenset(
    {
        ECONNREFUSED,
        ECONNRESET,
        ECONNABORTED,
        ETIMEDOUT,
        ENOTFOUND,
        EHOSTUNREACH,
        EAI_AGAIN,
    }
)
