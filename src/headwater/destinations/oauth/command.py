"""``headwater catalog oauth NAME``: a first access and refresh token for an OAuth destination.

Segment connects these destinations through its own OAuth apps; a Headwater instance uses the
operator's app instead, so this command runs the authorization-code flow with that app's client
id and secret and stores what the token endpoint issues in the instance's ``oauth`` setting,
keyed as actions-core reads it. From then on the delivery engine refreshes the access token
through the definition's ``refreshAccessToken`` on a 401.
"""

from __future__ import annotations

import webbrowser
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from headwater.destinations.definition import OAUTH_SETTING
from headwater.destinations.oauth.flow import AuthorizationRequest, CallbackListener, exchange
from headwater.destinations.oauth.providers import Provider, provider
from headwater.destinations.store import DestinationInfo, DestinationStore
from headwater.errors import InputError

DEFAULT_TIMEOUT = 300.0


@dataclass(frozen=True)
class Options:
    destination: str
    client_id: str | None = None
    client_secret: str | None = None
    authorize_url: str | None = None
    token_url: str | None = None
    scopes: tuple[str, ...] | None = None  # None: the table's
    pkce: bool | None = None  # None: the table's (off for a provider not in it)
    port: int = 0
    browser: bool = True
    timeout: float = DEFAULT_TIMEOUT


def authorize(
    store: DestinationStore, options: Options, say: Callable[[str], None] = print
) -> DestinationInfo:
    """Run the flow for one destination and store its tokens; raise before storing anything
    if any step fails."""
    destination = store.require(options.destination)
    chosen = _provider(destination, options)
    stored: Mapping[str, Any] = destination.settings.get(OAUTH_SETTING) or {}
    client_id = options.client_id or stored.get("clientId")
    client_secret = options.client_secret or stored.get("clientSecret")
    if not client_id or not client_secret:
        raise InputError(
            f"{destination.name} has no OAuth app stored: give --client-id and --client-secret "
            f"(the client id and secret of your own {chosen.name} OAuth app)"
        )
    with CallbackListener(options.port) as listener:
        request = AuthorizationRequest.new(chosen, client_id, listener.redirect_uri)
        url = request.url()
        say(f"Authorizing {destination.name} ({destination.type}) at {chosen.name}.")
        say(f"Your OAuth app must allow the redirect URI {listener.redirect_uri}")
        say("Open this URL in a browser and grant access:")
        say(url)
        if options.browser:
            webbrowser.open(url)
        say(f"Waiting up to {options.timeout:g} s for {chosen.name} to send the browser back…")
        callback = listener.wait(
            options.timeout,
            lambda left: say(f"Waiting for the authorization… ({left:.0f} s left)"),
        )
    code = request.code_from(callback)
    tokens = exchange(request, code, client_secret)
    oauth = {
        **stored,
        "clientId": client_id,
        "clientSecret": client_secret,
        "access_token": tokens["access_token"],
        "refresh_token_url": chosen.token_url,
    }
    if isinstance(tokens.get("refresh_token"), str) and tokens["refresh_token"]:
        oauth["refresh_token"] = tokens["refresh_token"]
    saved = store.save_oauth(destination.id, oauth)
    for line in _report(saved.name, oauth, tokens, chosen):
        say(line)
    return saved


def _provider(destination: DestinationInfo, options: Options) -> Provider:
    definition = destination.definition
    directory = definition.package_directory
    if directory is None or OAUTH_SETTING not in definition.secrets:
        raise InputError(
            f"{destination.name} is a {destination.type} destination, which does not "
            "authenticate with OAuth: its settings hold its credentials"
        )
    known = provider(directory, destination.settings)
    if known is None:
        if not (options.authorize_url and options.token_url):
            raise InputError(
                f"Headwater does not know where {definition.name} ({destination.type}) "
                "authorizes: give --authorize-url and --token-url (and --scope) from the "
                "provider's OAuth documentation"
            )
        known = Provider(definition.name, options.authorize_url, options.token_url)
    return replace(
        known,
        authorize_url=options.authorize_url or known.authorize_url,
        token_url=options.token_url or known.token_url,
        scopes=known.scopes if options.scopes is None else options.scopes,
        pkce=known.pkce if options.pkce is None else options.pkce,
    )


def _report(
    name: str, oauth: Mapping[str, Any], tokens: Mapping[str, Any], chosen: Provider
) -> list[str]:
    """What was stored, secrets named but never shown."""
    secret = [
        k for k in ("access_token", "refresh_token", "clientId", "clientSecret") if k in oauth
    ]
    lines = [
        f"Stored in {name}'s oauth setting: {', '.join(secret)} (secret), "
        f"refresh_token_url {oauth['refresh_token_url']}"
    ]
    if tokens.get("scope"):
        lines.append(f"Granted scope: {tokens['scope']}")
    if "refresh_token" not in tokens:
        lines.append(
            f"{chosen.name} issued no refresh token"
            + (
                "; the one stored before is kept."
                if "refresh_token" in oauth
                else ": when the access token expires, run this command again."
            )
        )
    elif tokens.get("expires_in"):
        lines.append(
            f"The access token expires in {tokens['expires_in']} s; Headwater refreshes it "
            "when the destination answers 401."
        )
    return lines
