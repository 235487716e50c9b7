"""Where the OAuth destinations' providers authorize and issue tokens.

Segment's package carries each destination's ``refreshAccessToken`` but not the authorization
endpoint nor the scopes its own OAuth app asks for (Segment runs that flow in its app), so
``headwater catalog oauth`` keeps the providers' documented endpoints here, keyed by the
package's directory. The token URLs match the ones the package's ``refreshAccessToken`` posts
to, so a refresh goes where the first token came from. Flags override every value, and a
destination missing here needs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

ClientAuth = Literal["body", "basic"]


@dataclass(frozen=True)
class Provider:
    """One provider's authorization-code flow (RFC 6749 §4.1) as it documents it."""

    name: str
    authorize_url: str
    token_url: str
    scopes: tuple[str, ...] = ()
    # Some providers join scopes with commas (RFC 6749 §3.3 says spaces).
    scope_separator: str = " "
    # Authorization parameters beyond RFC 6749's that the provider needs to issue a refresh
    # token (Google's ``access_type=offline``, Reddit's ``duration=permanent``).
    extra: Mapping[str, str] = field(default_factory=dict)
    # How the client authenticates at the token endpoint (RFC 6749 §2.3.1): client_id and
    # client_secret in the form, or HTTP Basic where the provider takes only that.
    client_auth: ClientAuth = "body"
    # PKCE (RFC 7636, S256) where the provider documents it; elsewhere it is left out, since a
    # provider that does not know it may refuse the unknown token parameter.
    pkce: bool = False
    # A boolean setting of the instance that moves the flow to the provider's sandbox host.
    sandbox_setting: str | None = None
    sandbox_hosts: tuple[str, str] | None = None  # (production host, sandbox host)


_GOOGLE_AUTHORIZE = "https://accounts.google.com/o/oauth2/v2/auth"
# The token endpoint every Google destination's refreshAccessToken in the package posts to.
_GOOGLE_TOKEN = "https://www.googleapis.com/oauth2/v4/token"
# access_type=offline asks for a refresh token; prompt=consent asks for it again when the user
# granted this app before (Google issues it only on consent).
_GOOGLE_OFFLINE = {"access_type": "offline", "prompt": "consent"}


def _google(name: str, *scopes: str) -> Provider:
    # https://developers.google.com/identity/protocols/oauth2/web-server (endpoints, PKCE,
    # access_type, prompt)
    return Provider(
        name, _GOOGLE_AUTHORIZE, _GOOGLE_TOKEN, scopes, extra=_GOOGLE_OFFLINE, pkce=True
    )


def _salesforce(name: str, *scopes: str) -> Provider:
    # https://help.salesforce.com/s/articleView?id=remoteaccess_oauth_web_server_flow.htm
    # (web server flow, PKCE recommended; test.salesforce.com for sandboxes)
    return Provider(
        name,
        "https://login.salesforce.com/services/oauth2/authorize",
        "https://login.salesforce.com/services/oauth2/token",
        scopes,
        pkce=True,
        sandbox_setting="isSandbox",
        sandbox_hosts=("login.salesforce.com", "test.salesforce.com"),
    )


def _linkedin(name: str, *scopes: str) -> Provider:
    # https://learn.microsoft.com/en-us/linkedin/shared/authentication/authorization-code-flow
    return Provider(
        name,
        "https://www.linkedin.com/oauth/v2/authorization",
        "https://www.linkedin.com/oauth/v2/accessToken",
        scopes,
    )


def _snap(name: str) -> Provider:
    # https://developers.snap.com/api/marketing-api/Ads-API/authentication (one scope)
    return Provider(
        name,
        "https://accounts.snapchat.com/login/oauth2/authorize",
        "https://accounts.snapchat.com/login/oauth2/access_token",
        ("snapchat-marketing-api",),
    )


def _amazon(name: str) -> Provider:
    # https://advertising.amazon.com/API/docs/en-us/guides/get-started/create-authorization-grant
    # (North America's Login with Amazon host; EU and FE accounts use their own, by flag)
    return Provider(
        name,
        "https://www.amazon.com/ap/oa",
        "https://api.amazon.com/auth/o2/token",
        ("advertising::campaign_management",),
    )


PROVIDERS: dict[str, Provider] = {
    # https://developers.hubspot.com/docs/api/working-with-oauth (authorize on app.hubspot.com,
    # tokens at api.hubapi.com/oauth/v1/token; ``oauth`` is required with any other scope)
    "hubspot": Provider(
        "HubSpot",
        "https://app.hubspot.com/oauth/authorize",
        "https://api.hubapi.com/oauth/v1/token",
        (
            "oauth",
            "crm.objects.contacts.read",
            "crm.objects.contacts.write",
            "crm.objects.companies.read",
            "crm.objects.companies.write",
            "crm.objects.custom.read",
            "crm.objects.custom.write",
            "crm.schemas.custom.read",
        ),
    ),
    "salesforce": _salesforce("Salesforce", "api", "refresh_token"),
    "actions-pardot": _salesforce("Salesforce (Pardot)", "pardot_api", "refresh_token"),
    # https://developers.google.com/google-ads/api/docs/oauth/internals (the one Ads scope)
    "google-enhanced-conversions": _google("Google Ads", "https://www.googleapis.com/auth/adwords"),
    # https://developers.google.com/sheets/api/scopes
    "google-sheets": _google("Google Sheets", "https://www.googleapis.com/auth/spreadsheets"),
    # https://developers.google.com/doubleclick-advertisers/guides/conversions_upload
    # (the Conversions service's scope)
    "google-campaign-manager-360": _google(
        "Google Campaign Manager 360", "https://www.googleapis.com/auth/ddmconversions"
    ),
    # https://developers.google.com/display-video/api/guides/getting-started/overview
    "first-party-dv360": _google(
        "Google Display & Video 360", "https://www.googleapis.com/auth/display-video"
    ),
    # https://developers.google.com/data-manager/api/devguides/quickstart/set-up-access
    "google-data-manager": _google(
        "Google Data Manager", "https://www.googleapis.com/auth/datamanager"
    ),
    # https://developers.intercom.com/docs/build-an-integration/learn-more/authentication/setting-up-oauth
    # (permissions are chosen on the app, not per request: no scope; the access token does not
    # expire and no refresh token is issued; Intercom accepts only HTTPS redirect URLs, so a
    # loopback redirect needs a forwarding HTTPS URL registered, given with the flags)
    "intercom": Provider(
        "Intercom", "https://app.intercom.com/oauth", "https://api.intercom.io/auth/eagle/token"
    ),
    "linkedin-audiences": _linkedin("LinkedIn Audiences", "r_ads", "rw_dmp_segments"),
    "linkedin-conversions": _linkedin("LinkedIn Conversions", "r_ads", "rw_conversions"),
    "snap-audiences": _snap("Snap Audiences"),
    "snap-conversions-api": _snap("Snap Conversions"),
    # https://github.com/reddit-archive/reddit/wiki/OAuth2 (duration=permanent for a refresh
    # token; the token endpoint takes the client by HTTP Basic, as the package's refresh does)
    "reddit-audiences": Provider(
        "Reddit Ads",
        "https://www.reddit.com/api/v1/authorize",
        "https://www.reddit.com/api/v1/access_token",
        ("adsread", "adsedit"),
        extra={"duration": "permanent"},
        client_auth="basic",
    ),
    # https://learn.microsoft.com/en-us/advertising/guides/authentication-oauth (Microsoft
    # identity platform, msads.manage with offline_access for a refresh token)
    "ms-bing-ads-audiences": Provider(
        "Microsoft Advertising",
        "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        "https://login.microsoftonline.com/common/oauth2/v2.0/token",
        ("https://ads.microsoft.com/msads.manage", "offline_access"),
        pkce=True,
    ),
    "amazon-amc": _amazon("Amazon Ads (AMC)"),
    "amazon-conversions-api": _amazon("Amazon Ads (Conversions)"),
    # https://developers.facebook.com/docs/facebook-login/guides/advanced/manual-flow
    # (comma-separated scopes; no refresh token: a long-lived user token)
    "facebook-custom-audiences": Provider(
        "Facebook",
        "https://www.facebook.com/v21.0/dialog/oauth",
        "https://graph.facebook.com/v21.0/oauth/access_token",
        ("ads_management",),
        scope_separator=",",
    ),
}


def provider(directory: str, settings: Mapping[str, Any]) -> Provider | None:
    """The table's entry for a package directory, on the sandbox host when the instance's
    settings say sandbox."""
    found = PROVIDERS.get(directory)
    if found is None or found.sandbox_setting is None or found.sandbox_hosts is None:
        return found
    if settings.get(found.sandbox_setting) is not True:
        return found
    production, sandbox = found.sandbox_hosts
    return replace(
        found,
        authorize_url=found.authorize_url.replace(production, sandbox),
        token_url=found.token_url.replace(production, sandbox),
    )
