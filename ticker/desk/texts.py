"""Every visible string of the desk's people, tokens and settings pages, one table per page.

The templates (`web/people.html`, `tokens.html`, `settings.html`, their layout
`manage.html` and the shared fields of `desk-parts.html`) show only `t.<key>`, and the same
table goes to `web/people.js` as JSON (`<script type="application/json" id="page-strings">`,
never run) for what the script says: its messages, confirmations and statuses. The script
fills `{name}`-style placeholders in as text, never as HTML. No key may be the name of a
mapping method (`copy`, `items`...): Jinja would read `t.copy` as the method.

English only for now: `strings(page, lang)` is where a translation will be looked up
(`lang` is the user's preference, `ticker.newsroom.users.LANGS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# The top bar, the languages and what every page's script may say.
COMMON: Final = {
    "brand": "Ticker desk",
    "nav_label": "Desk",
    "nav_desk": "Desk",
    "nav_reader": "Reader page",
    "nav_audit": "Audit trail",
    "nav_people": "People",
    "nav_tokens": "API tokens",
    "nav_settings": "Settings",
    "sign_out": "Sign out",
    "lang_en": "English",
    "lang_ar": "Arabic",
    "lang_es": "Spanish",
    "all_editions": "All editions",
    "cancel": "Cancel",
    "no_connection": "No connection to the server. Try again.",
    "server_said": "The server said {status}.",
    "signed_out": "Your session ended. Sign in again.",
}

PEOPLE: Final = {
    **COMMON,
    "title": "People",
    "intro": "Who may use the desk, with which role, language and default editions. "
             "A change applies at once.",
    "add_title": "Add a user",
    "name": "User name",
    "name_hint": "1-32 of a-z, 0-9, '.', '_', '-'.",
    "role": "Role",
    "role_contributor": "Contributor",
    "role_editor": "Editor",
    "role_admin": "Admin",
    "roles_hint": "Contributors send lines for approval; editors publish; admins also "
                  "manage people and tokens.",
    "password": "Password",
    "password_hint": "At least 10 characters. Tell them in person, not by email.",
    "lang": "Language",
    "editions": "Default editions",
    "editions_hint": "None ticked: all editions.",
    "add": "Add user",
    "added": "{name} added.",
    "list_title": "Users",
    "no_users": "No users yet.",
    "you": "you",
    "active": "Active",
    "disabled": "Disabled",
    "created": "Created (UTC)",
    "updated": "Updated (UTC)",
    "manage": "Change role, language, editions, password…",
    "set_role": "Change role",
    "set_lang": "Change language",
    "set_editions": "Save editions",
    "new_password": "New password",
    "set_password": "Set password",
    "end_sessions": "End sessions",
    "disable": "Disable",
    "enable": "Enable",
    "done_role": "{name} is now {role}.",
    "done_lang": "{name}'s language is now {lang}.",
    "done_editions": "{name}'s default editions are saved.",
    "done_passwd": "{name} has a new password; their sessions ended.",
    "done_end_sessions": "Every session of {name} ended.",
    "done_disable": "{name} is disabled and signed out everywhere.",
    "done_enable": "{name} is enabled again.",
    "confirm_disable_title": "Disable {name}?",
    "confirm_disable_text": "They are signed out everywhere at once and cannot sign in until "
                            "an admin enables them again.",
    "confirm_disable_button": "Disable",
    "confirm_end_sessions_title": "End every session of {name}?",
    "confirm_end_sessions_text": "They are signed out on every device and must sign in "
                                 "again. Their password stays.",
    "confirm_end_sessions_button": "End sessions",
}

TOKENS: Final = {
    **COMMON,
    "title": "API tokens",
    "intro": "Publishing services send a token as Authorization: Bearer <token>. Only a digest "
             "of each token is kept, so a lost token cannot be shown again: revoke it and "
             "create another.",
    "create_title": "Create a token",
    "name": "Name",
    "name_hint": "1-64 of letters, digits, '-', '_': say which service will use it.",
    "create": "Create token",
    "created_status": "Token {name} created.",
    "once_title": "New token: {name}",
    "once_warning": "Copy it now. It will not be shown again.",
    "token": "Token",
    "copy_button": "Copy",
    "copied": "Copied.",
    "copy_failed": "Could not copy: select the token and copy it yourself.",
    "once_done": "I have copied it",
    "list_title": "Tokens",
    "col_name": "Name",
    "col_created": "Created (UTC)",
    "col_actions": "Actions",
    "no_tokens": "No tokens.",
    "revoke": "Revoke",
    "revoked": "Token {name} revoked.",
    "confirm_revoke_title": "Revoke the token {name}?",
    "confirm_revoke_text": "Every service using it is refused at once. This cannot be undone.",
    "confirm_revoke_button": "Revoke",
}

SETTINGS: Final = {
    **COMMON,
    "title": "Your settings",
    "intro": "Your language on the desk and the editions you work on by default.",
    "lang": "Language",
    "lang_hint": "The language of the desk's pages.",
    "editions": "Default editions",
    "editions_hint": "None ticked: all editions.",
    "save": "Save",
    "saved": "Saved.",
}

PAGES: Final[Mapping[str, Mapping[str, str]]] = {
    "people": PEOPLE, "tokens": TOKENS, "settings": SETTINGS}


def strings(page: str, lang: str = "en") -> Mapping[str, str]:
    """The visible strings of `page` ("people", "tokens", "settings") in `lang`: English
    for now, whatever `lang` is."""
    return PAGES[page]

