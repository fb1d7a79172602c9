"""Every visible string of the desk's pages, one table per page, in English, Arabic and Spanish.

The templates (`web/desk.html`, `audit.html`, `login.html`, `message.html`, `people.html`,
`tokens.html`, `webhooks.html`, `settings.html`, their layout `manage.html` and the shared
fields of `desk-parts.html`) show only `t.<key>`, and the same table goes to the page's scripts
(`web/i18n.js`, read by `desk.js` and `people.js`) as JSON (`<script type="application/json"
id="page-strings">`, never run) for what the scripts say: messages, confirmations, statuses,
flags, buttons. Placeholders are `{name}`, filled in as text, never as HTML. No key may be
the name of a mapping method (`copy`, `items`...): Jinja would read `t.copy` as the method.

`strings(page, lang)` is the page's table in `lang` (the user's preference,
`ticker.newsroom.users.LANGS`; the sign-in page's comes from the browser's Accept-Language,
`accepted_lang`). The English tables are here; `texts_ar` and `texts_es` hold the same keys
in Arabic and Spanish. A key missing from a translation falls back to English, and
`tests/test_texts.py` makes sure none is missing, none is extra, and every translation has
the English placeholders.

Counts that need a noun are *plural families*: `<key>_one`, `_two`, `_few` and `_other`,
chosen by the language's plural rule (`plural_category` here, `Intl.PluralRules` in the
scripts; Arabic has a dual and a form for 3-10). A form may leave out `{n}` where the
language says the number with the noun ("ساعتان", two hours).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from ticker.desk import texts_ar, texts_es
from ticker.newsroom.users import DEFAULT_LANG, LANGS

RTL: Final = frozenset({"ar"})
PLURAL_FORMS: Final = ("one", "two", "few", "other")
PLACEHOLDER: Final = re.compile(r"\{([a-z_]+)\}")
ARABIC_DIGITS: Final = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")

# The top bar, the languages, the roles as a sentence says them, and what every page's
# script may say.
COMMON: Final = {
    "brand": "Ticker desk",
    "nav_label": "Desk",
    "nav_desk": "Desk",
    "nav_reader": "Reader page",
    "nav_audit": "Audit trail",
    "nav_people": "People",
    "nav_tokens": "API tokens",
    "nav_webhooks": "Webhooks",
    "nav_settings": "Settings",
    "sign_out": "Sign out",
    "lang_en": "English",
    "lang_ar": "Arabic",
    "lang_es": "Spanish",
    "role_word_contributor": "contributor",
    "role_word_editor": "editor",
    "role_word_admin": "admin",
    "all_editions": "All editions",
    "cancel": "Cancel",
    "list_sep": ", ",
    "no_connection": "No connection to the server. Try again.",
    "server_said": "The server said {status}.",
    "signed_out": "Your session ended. Sign in again.",
}

# Durations in words: the desk's expiry choices and the default expiry.
DURATIONS: Final = {
    "minutes_one": "{n} minute",
    "minutes_two": "{n} minutes",
    "minutes_few": "{n} minutes",
    "minutes_other": "{n} minutes",
    "hours_one": "{n} hour",
    "hours_two": "{n} hours",
    "hours_few": "{n} hours",
    "hours_other": "{n} hours",
    "minutes_from_now_one": "{n} minute from now",
    "minutes_from_now_two": "{n} minutes from now",
    "minutes_from_now_few": "{n} minutes from now",
    "minutes_from_now_other": "{n} minutes from now",
    "hours_from_now_one": "{n} hour from now",
    "hours_from_now_two": "{n} hours from now",
    "hours_from_now_few": "{n} hours from now",
    "hours_from_now_other": "{n} hours from now",
}

DESK: Final = {
    **COMMON,
    **DURATIONS,
    "title": "Desk",
    "skip": "Skip to the new line",
    "connecting": "Connecting…",
    "live": "Live",
    "reconnecting": "Reconnecting…",
    "stale": "Redis unreachable: the board may be out of date",
    # compose
    "compose_title": "New line",
    "text": "Text",
    "text_hint": "One line, plain text.",
    "key_enter": "Enter",
    "shortcut_publishes": "publishes.",
    "count": "{n} / {max}",
    "count_over": "{n} / {max} ({extra} too many)",
    "source": "Source",
    "optional": "(optional)",
    "source_placeholder": "e.g. Israeli media",
    "channels": "Channels",
    "urgency": "Urgency",
    "urgency_flash": "Flash",
    "urgency_urgent": "Urgent",
    "urgency_breaking": "Breaking",
    "more": "Link, tags, expiry, schedule",
    "link": "Link",
    "link_note": "(optional, https)",
    "tags": "Tags",
    "tags_note": "(optional, comma separated)",
    "tags_placeholder": "lebanon, ceasefire",
    "ttl": "Expires after",
    "ttl_default": "Default for {urgency}: {duration}",
    "ttl_hint": "Lines leave the air by themselves; extend them on the desk.",
    "at": "Publish at",
    "at_note": "(optional; your local time)",
    "preview": "Preview",
    "preview_empty": "Type the line to see it as readers will.",
    "preview_rtl": "{edition} (right to left)",
    "publish": "Publish",
    "send_for_approval": "Send for approval",
    "publishing": "Publishing…",
    "sending": "Sending…",
    "published": "Published to {channels} at {time}.",
    "scheduled_for": "Scheduled for {time} on {channels}.",
    "sent_for_approval": "Sent to the editors for approval.",
    "write_first": "Write the line first.",
    "too_long": "The line is {n} characters; the limit is {max}.",
    "choose_channel": "Choose at least one channel.",
    "link_https": "The link must start with https:// and have no spaces.",
    # the board
    "board_title": "On air now",
    "show": "Show",
    "pending_title": "Waiting for approval",
    "scheduled_title": "Scheduled",
    "nothing_on_air": "Nothing on air.",
    "on_air": "{n} on air",
    "on_air_more": "{n} on air, {more} more",
    "to_translate": "To translate into {edition}",
    "queue_count": "({n})",
    "dismiss": "Dismiss",
    "dismissed": "Dismissed for {edition}: {text}",
    "just_now": "just now",
    "expires": "expires {when}",
    "expired": "expired {when}",
    "due_now": "due now",
    "flag_corrected": "Corrected · v{version}",
    "flag_pinned": "Pinned",
    "flag_held": "Held: not on air",
    "flag_expired": "Expired",
    "flag_over": "Live, over the {max}-item limit",
    "flag_needs_update": "Needs update: {edition} was corrected",
    "by": "by {name}",
    "by_unknown": "unknown",
    "on_air_since": "on air since {time}",
    "reach_one": "reached {n} screen",
    "reach_two": "reached {n} screens",
    "reach_few": "reached {n} screens",
    "reach_other": "reached {n} screens",
    "also_in": "also in {editions}",
    "translation_also_in": "translation; also in {editions}",
    "story_link": "story link",
    "actions": "Actions",
    "op_correct": "Correct",
    "op_confirm": "No change needed",
    "op_translate": "Translate",
    "op_hold": "Hold",
    "op_release": "Release",
    "op_pin": "Pin",
    "op_unpin": "Unpin",
    "op_extend": "Extend",
    "op_kill": "Kill",
    "done_correct": "Corrected",
    "done_hold": "Held",
    "done_release": "Released",
    "done_pin": "Pinned",
    "done_unpin": "Unpinned",
    "done_extend": "Extended",
    "done_kill": "Killed",
    "done_confirm": "Confirmed unchanged",
    "done_on": "{done} on {channel}: {text}.",
    "done_on_short": "{done} on {channel}.",
    "failed": "That did not work.",
    # scheduled and pending lines
    "job_to": "to {channels}",
    "job_at": "at {time}",
    "approve_scheduled": "Approve (scheduled)",
    "approve_publish": "Approve and publish",
    "reject": "Reject",
    "withdraw": "Withdraw",
    "approved": "Approved: {text}",
    "withdrawn": "Withdrawn: {text}",
    "cancelled": "Cancelled: {text}",
    "rejected": "Rejected: {text}",
    # dialogs
    "correct_title": "Correct the line",
    "correct_intro": "Same item, next version; readers see it marked as corrected.",
    "correct_text": "Corrected text",
    "why": "Why",
    "why_note": "(optional, kept in the audit trail)",
    "correct_save": "Publish correction",
    "write_corrected": "Write the corrected line.",
    "kill_title": "Kill this line everywhere?",
    "kill_text": "It disappears at once from every reader's ticker, on every channel page "
                 "showing it. This cannot be undone.",
    "reason": "Reason",
    "required": "(required)",
    "kill_every_version": "Kill every version",
    "kill_in": "Kill in {editions} (every version)",
    "kill_confirm": "Kill everywhere",
    "kill_reason_needed": "Say why it is killed (kept in the audit trail).",
    "translate_title": "Translate",
    "original": "Original",
    "original_from": "Original ({edition})",
    "source_fact": "source: {source}",
    "edition": "Edition",
    "translate_save": "Publish the translation",
    "no_edition_left": "Every edition has this story already.",
    "write_translation": "Write the translated line.",
    "published_in": "Published in {edition}: {text}",
    "sent_in": "Sent for approval in {edition}: {text}",
    "extend_title": "Keep it on air",
    "extend_now": "Now it {until}.",
    "until": "Until",
    "extend_save": "Extend",
    "reject_title": "Reject this submission?",
    "reject_note": "(optional; the author sees it in the audit)",
}

AUDIT: Final = {
    **COMMON,
    "title": "Audit trail",
    "intro": "Every action on the desk, newest first. Times are UTC.",
    "user": "User",
    "channel": "Channel",
    "all_channels": "all channels",
    "filter": "Filter",
    "clear_filters": "Clear",
    "entries": "Audit entries",
    "col_when": "When (UTC)",
    "col_who": "Who",
    "col_what": "What",
    "col_channel": "Channel",
    "col_item": "Item",
    "col_before": "Before",
    "col_after": "After",
    "col_reason": "Reason",
    "col_detail": "Detail",
    "no_entries": "No entries.",
    "older": "Older entries",
    # What each audit action is called (English: the action's own name, as the docs use it).
    "action_publish": "publish",
    "action_correct": "correct",
    "action_hold": "hold",
    "action_release": "release",
    "action_pin": "pin",
    "action_unpin": "unpin",
    "action_extend": "extend",
    "action_kill": "kill",
    "action_confirm": "confirm",
    "action_dismiss": "dismiss",
    "action_schedule": "schedule",
    "action_submit": "submit",
    "action_approve": "approve",
    "action_reject": "reject",
    "action_cancel": "cancel",
    "action_login": "login",
    "action_logout": "logout",
    "action_prefs": "prefs",
    "action_user_add": "user-add",
    "action_user_role": "user-role",
    "action_user_lang": "user-lang",
    "action_user_editions": "user-editions",
    "action_user_passwd": "user-passwd",
    "action_user_end_sessions": "user-end-sessions",
    "action_user_disable": "user-disable",
    "action_user_enable": "user-enable",
    "action_token_create": "token-create",
    "action_token_revoke": "token-revoke",
    "action_webhook_add": "webhook-add",
    "action_webhook_remove": "webhook-remove",
    "action_webhook_test": "webhook-test",
    "action_webhook_retry": "webhook-retry",
}

LOGIN: Final = {
    "brand": COMMON["brand"],
    "title": "Sign in",
    "intro": "Sign in to publish, correct and kill breaking-news lines.",
    "username": "User name",
    "password": "Password",
    "submit": "Sign in",
    "csrf_expired": "This sign-in form expired or came from another site. Please try again.",
    "enter_username": "Enter your user name.",
    "enter_password": "Enter your password.",
    "wrong": "Wrong user name or password.",
    "too_many_account": "Too many failed sign-ins for this account.",
    "too_many_ip": "Too many failed sign-ins from your network.",
    "retry_one": "Try again in {n} minute.",
    "retry_two": "Try again in {n} minutes.",
    "retry_few": "Try again in {n} minutes.",
    "retry_other": "Try again in {n} minutes.",
}

MESSAGE: Final = {
    **COMMON,
    "not_for_role_title": "Not for your role",
    "not_for_role_text": "This page needs the {role} role; you are {user_role}.",
    "back": "Back to the desk",
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
                  "manage people, tokens and webhooks.",
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
    "admin": "Admin token (may also manage webhooks over the HTTP API)",
    "admin_hint": "Leave it unticked for a service that only publishes.",
    "create": "Create token",
    "created_status": "Token {name} created.",
    "created_admin_status": "Admin token {name} created.",
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
    "col_kind": "Allows",
    "kind_admin": "Publishing and webhooks",
    "kind_publish": "Publishing",
    "col_actions": "Actions",
    "no_tokens": "No tokens.",
    "revoke": "Revoke",
    "revoked": "Token {name} revoked.",
    "confirm_revoke_title": "Revoke the token {name}?",
    "confirm_revoke_text": "Every service using it is refused at once. This cannot be undone.",
    "confirm_revoke_button": "Revoke",
}

WEBHOOKS: Final = {
    **COMMON,
    "title": "Webhooks",
    "intro": "Services that follow the ticker over HTTP. Each URL is sent every event it "
             "asked for, one request per event, in order, signed; a failed request is "
             "retried for 24 hours, then kept as a dead letter. Times are UTC.",
    "add_title": "Add a webhook",
    "url": "URL",
    "url_hint": "https:// (http:// only for hosts the operator allowed). The receiver "
                "answers 2xx within 10 seconds.",
    "channels": "Channels",
    "channels_hint": "At least one.",
    "choose_channel": "Choose at least one channel.",
    "urgencies": "Urgencies",
    "ops": "Events",
    "all_hint": "None ticked: all.",
    "urgency_flash": "Flash",
    "urgency_urgent": "Urgent",
    "urgency_breaking": "Breaking",
    "op_publish": "Published",
    "op_correct": "Corrected",
    "op_kill": "Killed",
    "op_hold": "Held",
    "op_release": "Released",
    "op_pin": "Pinned",
    "op_unpin": "Unpinned",
    "op_extend": "Extended",
    "op_versions": "Versions linked",
    "add": "Add webhook",
    "added": "Webhook added for {url}.",
    "once_title": "Signing secret for {url}",
    "once_warning": "Copy it now. It will not be shown again.",
    "secret": "Secret",
    "secret_hint": "Standard Webhooks: verify webhook-signature with this secret, and drop "
                   "a webhook-id you have already had.",
    "copy_button": "Copy",
    "copied": "Copied.",
    "copy_failed": "Could not copy: select the secret and copy it yourself.",
    "once_done": "I have copied it",
    "list_title": "Subscriptions",
    "no_webhooks": "No webhooks yet.",
    "id": "ID",
    "all": "All",
    "created": "Created (UTC)",
    "by": "By",
    "sent": "Sent",
    "waiting": "Waiting",
    "dead": "Given up",
    "failed_attempts": "Failed attempts",
    "state_idle": "Up to date",
    "state_sending": "Sending",
    "state_retrying": "Retrying",
    "oldest": "The oldest waiting was queued {when}.",
    "retrying": "Attempt {n} failed ({error}); next try {when}.",
    "last_error": "Last error: {error}",
    "test": "Send a test event",
    "test_queued": "A test event is on its way to {url}.",
    "remove": "Remove",
    "removed": "Webhook for {url} removed.",
    "confirm_remove_title": "Remove the webhook for {url}?",
    "confirm_remove_text": "It is sent nothing more, and the events waiting for it are "
                           "dropped. This cannot be undone.",
    "confirm_remove_button": "Remove",
    "dead_letters": "Dead letters",
    "loading": "Loading…",
    "no_dead": "No dead letters.",
    "gave_up": "Given up (UTC)",
    "event": "Event",
    "item": "Item",
    "error": "Error",
    "http_status": "HTTP status",
    "no_answer": "no answer",
    "attempts": "Attempts",
    "retry": "Retry",
    "retried": "Queued again, after what is waiting, with its original webhook-id.",
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
    "desk": DESK, "audit": AUDIT, "login": LOGIN, "message": MESSAGE,
    "people": PEOPLE, "tokens": TOKENS, "webhooks": WEBHOOKS, "settings": SETTINGS}

# Each language's tables, page by page (English: the tables above).
CATALOGUES: Final[Mapping[str, Mapping[str, Mapping[str, str]]]] = {
    "en": PAGES, "ar": texts_ar.PAGES, "es": texts_es.PAGES}


def strings(page: str, lang: str = DEFAULT_LANG) -> dict[str, str]:
    """The visible strings of `page` in `lang`; a key the translation lacks is English."""
    english = PAGES[page]
    translated = CATALOGUES.get(lang, PAGES).get(page, {})
    return {key: translated.get(key, text) for key, text in english.items()}


def direction(lang: str) -> str:
    """`rtl` for a language written right to left, else `ltr`."""
    return "rtl" if lang in RTL else "ltr"


def digits(text: str, lang: str) -> str:
    """`text` with its digits as `lang` writes them (Arabic-Indic for Arabic)."""
    return text.translate(ARABIC_DIGITS) if lang == "ar" else text


def fill(template: str, **values: object) -> str:
    """`template` with each `{name}` replaced by the text of `values[name]`."""
    return PLACEHOLDER.sub(lambda m: str(values.get(m[1], m[0])), template)


def plural_category(n: int, lang: str) -> str:
    """CLDR's plural category of `n` in `lang`, among PLURAL_FORMS (Arabic's "zero" and
    "many" are written like "other")."""
    if n == 1:
        return "one"
    if lang == "ar":
        if n == 2:
            return "two"
        if 3 <= n % 100 <= 10:
            return "few"
    return "other"


def count(t: Mapping[str, str], family: str, n: int, lang: str) -> str:
    """The plural family `family` of `t` (`{family}_one`...) said of `n`."""
    return fill(t[f"{family}_{plural_category(n, lang)}"], n=digits(str(n), lang))


def duration(t: Mapping[str, str], seconds: int, lang: str, family: str = "") -> str:
    """`seconds` in whole hours or minutes: `hours{family}` or `minutes{family}` of `t`."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return count(t, "hours" + family, seconds // 3600, lang)
    return count(t, "minutes" + family, max(1, round(seconds / 60)), lang)


ACCEPT_ITEM: Final = re.compile(
    r"^\s*([A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*)\s*"
    r"(?:;\s*[qQ]\s*=\s*(0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?))?\s*$")
MAX_ACCEPT: Final = 512


def accepted_lang(header: str | None) -> str:
    """The desk language an Accept-Language header prefers (RFC 9110 §12.5.4), by primary
    subtag: the highest weight among LANGS, the first listed on a tie; English when none.
    Strict and small: an entry that is not `tag[;q=weight]` is skipped, a weight of 0
    refuses, `*` and other languages count for nothing, a header over 512 characters is
    not read."""
    if not header or len(header) > MAX_ACCEPT:
        return DEFAULT_LANG
    best, best_q = DEFAULT_LANG, 0.0
    for part in header.split(","):
        m = ACCEPT_ITEM.match(part)
        if m is None:
            continue
        primary = m[1].split("-")[0].lower()
        weight = float(m[2]) if m[2] is not None else 1.0
        if primary in LANGS and weight > best_q:
            best, best_q = primary, weight
    return best
