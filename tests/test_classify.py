"""classify(): reasons, actions and codes for the replies that matter most to a sender."""

from __future__ import annotations

import pytest

from sendguard import Action, Rule, Rules, classify
from sendguard._bounces.classify import REASONS, SENDER_REASONS


def test_the_contract_examples() -> None:
    c = classify("550 5.1.1 <a@b.example>: Recipient address rejected: User unknown")
    assert (c.reason, c.action, c.permanent, c.reply_code, c.enhanced_code) == (
        "userunknown",
        Action.SUPPRESS,
        True,
        550,
        "5.1.1",
    )
    c = classify(reply_code=554, enhanced_code="5.7.1", text="Client host blocked", stage="RCPT")
    assert (c.reason, c.action, c.permanent) == ("blocked", Action.PAUSE_SENDER, True)


@pytest.mark.parametrize(
    ("text", "reply_code", "enhanced"),
    [
        ("550 sorry, no mailbox here by that name (#5.1.1 - chkusr)", 550, "5.1.1"),
        ("554 Message refused (5.7.1)", 554, "5.7.1"),
        ("550-5.7.26 Unauthenticated email is not accepted", 550, "5.7.26"),
        ("Remote host said: 452 4.2.2 Mailbox full", 452, "4.2.2"),
        ("#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##", 550, "5.1.1"),
    ],
)
def test_codes_are_parsed_from_the_text(text: str, reply_code: int, enhanced: str) -> None:
    c = classify(text)
    assert (c.reply_code, c.enhanced_code) == (reply_code, enhanced)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        # Microsoft
        (
            "550 5.7.509 Access denied, sending domain example.com does not pass DMARC",
            "authfailure",
        ),
        (
            "550 5.7.515 Access denied, sending domain does not meet the required authentication",
            "authfailure",
        ),
        (
            "550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP",
            "blocked",
        ),
        ("550 5.4.1 Recipient address rejected: Access denied. AS(201806281)", "userunknown"),
        # Gmail
        (
            "550-5.7.26 This mail has been blocked because the sender is unauthenticated.",
            "authfailure",
        ),
        (
            "421-4.7.28 Gmail has detected an unusual rate of unsolicited mail originating "
            "from your SPF domain",
            "ratelimited",
        ),
        ("550-5.1.1 The email account that you tried to reach does not exist.", "userunknown"),
        ("452-4.2.2 The email account that you tried to reach is over quota.", "mailboxfull"),
        # Yahoo
        (
            "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to user complaints",
            "badreputation",
        ),
        ("554 delivery error: dd This user doesn't have a yahoo.com account", "userunknown"),
        # Blocklists
        (
            "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
            "blocked",
        ),
        ("554 Blocked - see https://www.barracudacentral.org/blocklists", "blocked"),
        # Recipient state
        ("552 5.2.2 Mailbox full", "mailboxfull"),
        ("550 5.2.1 The email account that you tried to reach is disabled.", "suspend"),
        ("550 5.1.2 Host unknown", "hostunknown"),
        ("550 5.1.6 Recipient has moved", "hasmoved"),
        ("552 5.3.4 Message size exceeds fixed limit", "emailtoolarge"),
        ("554 5.7.1 Message rejected: virus found", "virusdetected"),
        ("550 5.7.25 The IP address sending this message does not have a PTR record", "requireptr"),
        ("451 4.7.1 Greylisted, please try again later", "onhold"),
    ],
)
def test_provider_replies(text: str, reason: str) -> None:
    assert classify(text).reason == reason


@pytest.mark.parametrize(
    "text",
    [
        "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
        "550 5.7.1 Message rejected due to DMARC policy",
        "550 5.7.26 This message does not have authentication information",
        "550 5.1.1 Sender address rejected: Domain of sender address does not exist",
        "553 5.1.8 <root@x.example>... Domain of sender address root@x.example does not exist",
        "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred",
        "550 5.7.1 Client host rejected: cannot find your reverse hostname",
    ],
)
def test_sender_side_refusals_never_suppress(text: str) -> None:
    c = classify(text)
    assert c.reason in SENDER_REASONS
    assert c.action is Action.PAUSE_SENDER


def test_a_temporary_sender_refusal_that_names_no_limit_is_retried() -> None:
    c = classify("451 4.7.1 Please try again later")
    assert (c.permanent, c.action) == (False, Action.RETRY)


def test_userunknown_at_mail_from_is_a_refusal_of_the_sender() -> None:
    assert classify("550 5.1.1 User unknown", stage="mail").reason == "rejected"


def test_userunknown_after_the_message_was_seen_is_a_filter() -> None:
    # Sisimai's judgement, which we share: the server let the recipient through at RCPT.
    c = classify("550 User unknown (in reply to end of DATA command)")
    assert (c.reason, c.action) == ("filtered", Action.FAIL)


def test_a_definite_phrase_keeps_its_reason_after_data() -> None:
    yahoo = "554 delivery error: dd This user doesn't have a yahoo.com account (x@yahoo.com)"
    assert classify(yahoo, stage="data").reason == "userunknown"
    assert classify("550 User unknown", stage="data").reason == "filtered"


def test_a_rejection_naming_only_the_recipient_is_userunknown_a_bare_one_is_not() -> None:
    assert classify("542 kijitora@example.com Rejected").reason == "userunknown"
    bare = classify("550 Rejected")
    assert (bare.reason, bare.action) == ("blocked", Action.PAUSE_SENDER)


def test_nothing_matched_is_onhold_and_not_suppressed() -> None:
    c = classify("599 something nobody wrote a rule for")
    assert (c.reason, c.rule) == ("onhold", "no rule matched")
    assert c.action is not Action.SUPPRESS


def test_user_rules_come_first_and_can_override() -> None:
    mine = Rules([Rule("mailboxfull", r"spazio esaurito", name="italian mailbox full")])
    c = classify("550 5.1.1 spazio esaurito", rules=mine)
    assert (c.reason, c.rule) == ("mailboxfull", "italian mailbox full")
    assert classify("550 5.1.1 spazio esaurito").reason == "userunknown"


def test_a_rule_must_name_a_known_reason_and_a_condition() -> None:
    with pytest.raises(ValueError, match="unknown reason"):
        Rule("dead", r"x")
    with pytest.raises(ValueError, match="needs"):
        Rule("userunknown")


def test_every_reason_has_an_action() -> None:
    for reason in REASONS:
        rule = Rules([Rule(reason, r"^zz$")], base=())
        assert classify("zz", reply_code=550, rules=rule).action in Action


@pytest.mark.parametrize(
    "text",
    [
        "550 Requested action not taken",  # a bare code names no cause
        "553 sorry",
        "550 Rejected by the remote server",
        # a recipient code beside words about a policy, the sender or abuse
        "552 5.1.1 <a@zoho.example> Mailbox delivery failure policy error",
        "553 VS10-RT Possible forgery or deactivated due to abuse (#5.1.1)",
        "552 5.1.1 <a@comcast.example> recipient rejected - extended quota violation",
        # a generic prefix with nothing after it
        "550 <a@b.example>: Recipient address rejected.",
        "554 5.7.1 <a@b.example>: Recipient address rejected: Access denied",
    ],
)
def test_no_suppression_without_positive_evidence(text: str) -> None:
    c = classify(text)
    assert c.action is not Action.SUPPRESS, c


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("550 5.1.1 http://support.example/answer?ip=1 - gsmtp", "userunknown"),  # help link
        ("550 5.4.1 Recipient address rejected: Access denied. AS(201806281)", "userunknown"),
        (
            "550 5.4.1 [a@b.example]: Recipient address rejected: Access denied [b.example]",
            "userunknown",
        ),
        ("540 5.7.1 <a@rambler.example>: recipient address rejected: Inactive", "suspend"),
        ("550 This account has been disabled or discontinued", "suspend"),
        ("550 unrouteable address", "userunknown"),
        ("553 mailbox name not allowed", "userunknown"),
    ],
)
def test_positive_evidence_suppresses(text: str, reason: str) -> None:
    c = classify(text)
    assert (c.reason, c.action) == (reason, Action.SUPPRESS), c


def test_an_account_that_may_come_back_is_soft() -> None:
    for text in ("550 Mailbox is frozen", "550 User suspended", "550 5.2.1 account locked"):
        c = classify(text)
        assert (c.reason, c.action) == ("suspend", Action.FAIL), c
    rate = "550 5.2.1 The user you are trying to contact is receiving mail at a rate that prevents"
    assert classify(rate).action is not Action.SUPPRESS


@pytest.mark.parametrize(
    "text",
    [
        "550 relaying to <a@b.example> prohibited by administrator",
        "553 5.1.1 (bad destination mailbox address),smtp;553 Relaying disallowed",
        "550 not local host b.example, not a gateway",
        "550 smtp auth required",
        "553 AUTH FAILED - a@b.example",
        "550 Administrative prohibition - envelope blocked",
        "550 Too many invalid recipients",
        "5.1.0 - Unknown address error 550-'5.7.1 Client host blocked using zen.spamhaus.org'",
    ],
)
def test_sender_side_wordings_pause_and_never_suppress(text: str) -> None:
    c = classify(text)
    assert c.action is Action.PAUSE_SENDER, c


@pytest.mark.parametrize(
    "text",
    [
        "SMTP error from remote mail server after initial connection: 554 5.7.1 User unknown",
        "host mx.b.example[192.0.2.1] refused to talk to me: 550 5.1.1 no such user",
        "host mx.b.example[192.0.2.1] said: 550 5.1.1 no such user (in reply to EHLO command)",
        "SMTP error from remote mail server after EHLO mta.a.example: 550 Access denied",
    ],
)
def test_a_refusal_at_the_greeting_or_ehlo_is_of_the_sending_host(text: str) -> None:
    c = classify(text)
    assert (c.reason, c.action) == ("blocked", Action.PAUSE_SENDER), c


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        # a blocklist hit on a link in the body is content; on the sending IP it is the sender
        ("554 5.7.1 Message rejected because it contains a URL listed in SURBL", "spamdetected"),
        (
            "554 5.7.1 the domain b.example in the message body is listed at dbl.spamhaus.org",
            "spamdetected",
        ),
        ("550 5.7.1 Client host [192.0.2.1] blocked using zen.spamhaus.org", "blocked"),
        # a sending quota is the sender's; a mailbox quota the recipient's
        ("550 5.4.5 Daily user sending quota exceeded", "ratelimited"),
        ("552 5.2.2 Mailbox quota exceeded", "mailboxfull"),
    ],
)
def test_the_most_specific_cause_wins(text: str, reason: str) -> None:
    assert classify(text).reason == reason


def test_a_permanent_refusal_naming_no_cause_counts_for_the_breaker() -> None:
    from sendguard._bounces.verdict import counts_as_bounce  # noqa: PLC0415

    nameless = classify("550 Requested action not taken")
    assert nameless.action is Action.FAIL
    assert counts_as_bounce(nameless, final=True, suppressed=False)
    assert not counts_as_bounce(classify("554 5.7.1 spam"), final=True, suppressed=False)
    assert not counts_as_bounce(classify("450 try later"), final=True, suppressed=False)


@pytest.mark.parametrize(
    "text",
    [
        "550 Invalid recipient - message rejected by policy",
        "554 5.7.1 Rejected, user unknown (policy)",
        "550 User unknown; rejecting because of DMARC policy",
        "550 5.1.1 unknown user - your message looks like spam",
        "550 5.7.1 Requested action not taken: mailbox not available",  # a policy code
        "The account or domain may not exist, they may be blacklisted",
    ],
)
def test_words_of_policy_or_content_outweigh_a_recipient_phrase(text: str) -> None:
    assert classify(text).action is not Action.SUPPRESS


@pytest.mark.parametrize(
    "text",
    [
        "550 Requested action not taken: mailbox unavailable",  # RFC 5321's 550, no policy code
        "553 5.3.0 <a@b.example>... Addressee unknown, relay=[192.0.2.1]",  # Sendmail's relay=
        "550 Host unknown (Authoritative answer from name server)",
        "550 5.1.1 <a@b.example>: Recipient address rejected: User unknown in local table",
    ],
)
def test_the_common_words_of_a_recipient_refusal_do_not_count_against_it(text: str) -> None:
    assert classify(text).action is Action.SUPPRESS


@pytest.mark.parametrize(
    "text",
    [
        "550 User (a@b.example) unknown.",
        "550 Mailbox ( a@b.example ) not found or inactivated",
        "550 Recipient <a@b.example> does not exist",
        "550 address [a@b.example]: invalid",
        "550 User not a member of domain: <a@b.example>",
        "550 user not a member of this domain",
    ],
)
def test_an_address_named_between_the_noun_and_the_verdict_is_dead(text: str) -> None:
    assert classify(text).action is Action.SUPPRESS


@pytest.mark.parametrize(
    "text",
    [
        "The user does not accept email in non-Western (non-Latin) character sets.",
        "550 The recipient does not accept mail with attachments",
        "550 This domain does not accept mail from your network",
        "550 does not accept messages larger than 10 MB",
        "554 does not accept e-mail containing executable files",
    ],
)
def test_refusing_some_mail_is_not_refusing_all_mail(text: str) -> None:
    assert classify(text).action is not Action.SUPPRESS


@pytest.mark.parametrize(
    "text",
    ["550 This domain does not accept mail", "550 5.1.0 host does not receive mail."],
)
def test_refusing_all_mail_is_a_dead_address(text: str) -> None:
    assert classify(text).action is Action.SUPPRESS


@pytest.mark.parametrize(
    ("text", "action"),
    [
        # A bare 5.7.1 ("delivery not authorized") names no cause: the message fails, the
        # sender is not paused for it.
        ("554 5.7.1 <a@b.example>: Recipient address rejected: BLOCK-RCPT.", Action.FAIL),
        ("551 5.7.1 Loop detected: Email is sent and forwarded from/to x.example.", Action.FAIL),
        ("550 5.7.1 recipient address suppressed due to customer policy", Action.FAIL),
        # ... but the words of a refusal of the sender still pause it.
        (
            "550 #5.7.1 Your access to submit messages to this e-mail system has been rejected.",
            Action.PAUSE_SENDER,
        ),
        ("554 5.7.1 You are not allowed to connect", Action.PAUSE_SENDER),
        (
            "553 you are trying to use me [mx.example] as a relay, but I have not been "
            "configured to let you [192.0.2.1] do this. (#5.7.1)",
            Action.PAUSE_SENDER,
        ),
        ("500 Unauthorized relay msg rejected", Action.PAUSE_SENDER),
        ("550 Denied due to spam list", Action.PAUSE_SENDER),
        ("501 a@b.example Sender email is not in my domain", Action.PAUSE_SENDER),
        (
            "550 Error: MAIL FROM is mismatched with message header from address!",
            Action.PAUSE_SENDER,
        ),
        ("421 Service refused, please try later. OFR_999 [999]", Action.PAUSE_SENDER),
        # At MAIL FROM, a policy refusal is about the sender.
        ("550 5.7.1 Access denied (in reply to MAIL FROM command)", Action.PAUSE_SENDER),
        # A bare 421 is a server closing the channel: retried, not a block.
        ("421 Service not available, closing transmission channel", Action.RETRY),
        ("421 Max message per connection reached, closing transmission channel", Action.RETRY),
        # A filter's spam trap blocks the message, not the sending host.
        ("553 5.7.1 SpamTrap=reject mode, Message blocked by BOX Solutions", Action.FAIL),
    ],
)
def test_whom_a_refusal_is_about(text: str, action: Action) -> None:
    assert classify(text).action is action


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("452 4.2.2 Sorry the recipient quota limit is exceeded.", "mailboxfull"),
        ("452 ErrMsg=Mailbox space not enough (space limit is 10240KB)", "mailboxfull"),
        ("552 Quota exceed the hard limit", "mailboxfull"),
        # A delay notice's own words say why only when nothing more specific does.
        ("421 Warning: message still undelivered after 4 hours", "expired"),
        (
            "451 4.0.0 Operating system error Warning: message still undelivered after 4 hours",
            "mailererror",
        ),
    ],
)
def test_wordings_of_quotas_and_delays(text: str, reason: str) -> None:
    assert classify(text).reason == reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        # Wordings no phrase knows, read by a word of their cause.
        ("550 Your server is listed on our RBL", "blocked"),
        ("554 client 192.0.2.1 forbidden here", "blocked"),
        ("550 DMARC alignment problem for example.com", "authfailure"),
        ("550 message looks like bulk advertising", "spamdetected"),
        ("554 trojan found in attachment", "virusdetected"),
        ("552 message length over maximum allowed", "emailtoolarge"),
        ("550 the userid kijitora is not valid here", "userunknown"),
        ("550 domain nyaan.example is unresolvable", "hostunknown"),
        ("450 dns temporary problem, retry later", "networkerror"),
        ("554 pipe to program exited with status 75", "mailererror"),
    ],
)
def test_a_word_of_the_cause_reads_a_wording_no_phrase_knows(text: str, reason: str) -> None:
    assert classify(text).reason == reason


@pytest.mark.parametrize(
    ("text", "not_reason"),
    [
        # A cue never reaches across a clause: "host said: 554 invalid ..." is no invalid host.
        ("Remote host said: 554 INVALID IP FOR SENDING MAIL OF DOMAIN example.com", "hostunknown"),
        ("Recipient: a@b.example; reply: 554 not valid sending host", "userunknown"),
        # "suspended" of a delivery is not a suspended account.
        ("delivery temporarily suspended: connect to 192.0.2.1: No route to host", "suspend"),
        # "banned content" is about the message.
        ("554 rejecting banned content", "blocked"),
    ],
)
def test_cue_words_do_not_jump_clauses_or_take_other_nouns(text: str, not_reason: str) -> None:
    found = classify(text)
    assert found.action is not Action.SUPPRESS
    assert found.reason != not_reason, found.rule


def test_cue_words_come_after_every_phrase_and_status_code() -> None:
    # A phrase or an enhanced status code says more than a cue word.
    assert classify("550 5.2.2 mailbox quota reached; policy").reason == "mailboxfull"
    assert classify("550 5.1.1 quota").reason != "mailboxfull"


@pytest.mark.parametrize(
    ("text", "reason", "action"),
    [
        # The quoted remote reply decides, not the reporter's wrapper.
        (
            "Delivery has failed: the mailbox is unavailable. Remote Server returned "
            "'554 5.7.1 Message rejected as spam by Content Filtering'",
            "spamdetected",
            Action.FAIL,
        ),
        (
            "Your message could not be delivered, user unknown? The error that the other "
            "server returned was: '550 5.7.1 Client host 192.0.2.1 blocked using "
            "zen.spamhaus.org'",
            "blocked",
            Action.PAUSE_SENDER,
        ),
        (
            "The e-mail address could not be found. Remote Server returned "
            "'550 5.1.1 RESOLVER.ADR.RecipNotFound; not found'",
            "userunknown",
            Action.SUPPRESS,
        ),
        # A quoted reply that says nothing leaves the wrapper's words: they prove no address
        # dead, and the quoted code decides the permanence.
        (
            "mailbox unavailable. Remote Server returned '550 Something nobody knows'",
            "onhold",
            Action.FAIL,
        ),
        ('host said: "451 try again later, we are busy"', "onhold", Action.RETRY),
    ],
)
def test_a_quoted_remote_reply_is_judged_first(text: str, reason: str, action: Action) -> None:
    found = classify(text)
    assert (found.reason, found.action) == (reason, action), found.rule


@pytest.mark.parametrize(
    ("text", "stage"),
    [
        (
            "Connected to 192.0.2.1 but greeting failed. Remote host said: 554 no mailbox here",
            "connect",
        ),
        ("Connected to 192.0.2.1 but my name was rejected. 550 unknown user", "connect"),
        ("Connected to 192.0.2.1 but sender was rejected. 550 5.1.1 user unknown", "mail"),
        ("SMTP error from remote mail server after pipelined MAIL FROM:<a@b.example>: 550", "mail"),
        ("554 5.7.1 rejected in response to the EHLO command: no such user", "connect"),
        ("550 refused at banner: mailbox unknown", "connect"),
        ("host mx.example said: 550 5.1.1 unknown user (in reply to RCPT TO command)", "rcpt"),
    ],
)
def test_the_stage_of_common_mta_wordings(text: str, stage: str) -> None:
    from sendguard._bounces.classify import stage_hint  # noqa: PLC0415

    assert stage_hint(text) == stage
    if stage != "rcpt":  # before any recipient was named, no address is proven dead
        assert classify(text).action is not Action.SUPPRESS


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("5.1.0 - Unknown address error 540-'Error: Wrong recipients'", Action.SUPPRESS),
        ("550 wrong address: a@b.example", Action.SUPPRESS),
        ("450 4.7.1 too many wrong recipients from your IP", Action.PAUSE_SENDER),
        (
            "550 5.2.1 The email account that you tried to reach is disabled. "
            "https://support.google.com/mail/?p=DisabledUser",
            Action.SUPPRESS,
        ),
    ],
)
def test_wrong_recipients_and_disabled_accounts(text: str, action: Action) -> None:
    assert classify(text).action is action


@pytest.mark.parametrize(
    ("text", "action"),
    [
        # A status code alone proves an address dead only for 5.1.1, 5.1.2, 5.1.3, 5.1.6, 5.1.10.
        ("550 5.1.1 nothing the rules know", Action.SUPPRESS),
        ("550 5.1.4 nothing the rules know", Action.FAIL),
        ("550 5.3.2 STOREDRV.Deliver: Missing or bad StoreDriver MDB properties", Action.FAIL),
        ("550 #5.1.0 Address rejected.", Action.FAIL),
        # RFC 5321's "mailbox unavailable" proves it after a 550, not after a 552.
        ("550 Requested action not taken: mailbox unavailable", Action.SUPPRESS),
        ('552 "RCPT TO" mailbox unavailable', Action.FAIL),
        # RFC 7372's 5.7.13 is the sending account's, unless the words name the recipient.
        ("525 5.7.13 User Account Disabled", Action.PAUSE_SENDER),
        ("525 5.7.13 Disabled recipient address", Action.SUPPRESS),
        # Security codes of the message fail it without pausing the sender.
        ("550 5.7.7 Message integrity failure", Action.FAIL),
        ("535 5.7.8 Authentication credentials invalid", Action.PAUSE_SENDER),
        ("535 Authentication Credentials Invalid", Action.PAUSE_SENDER),
        # One mailbox's receiving rate, or a per-message recipient limit: no sender pause.
        (
            "450 4.2.1 The user you are trying to contact is receiving mail at a rate that "
            "prevents additional messages from being delivered.",
            Action.RETRY,
        ),
        ("452 4.5.3 Too many recipients", Action.RETRY),
        ("452 too many recipients", Action.RETRY),
        ("450 4.7.1 too many connections from your IP", Action.PAUSE_SENDER),
        # Sender-side wordings.
        ("554 5.2.2 Submission quota exceeded", Action.PAUSE_SENDER),
        ("550 5.1.90 You've reached your daily limit for message recipients", Action.PAUSE_SENDER),
        ("550 Benutzer hat zuviele Mails auf dem Server.", Action.FAIL),
        ("501 5.5.2 <x>: Helo command rejected: Invalid name", Action.PAUSE_SENDER),
        ("550 5.7.506 Access Denied, Bad HELO", Action.PAUSE_SENDER),
        ("421 4.7.0 IP not in whitelist for RCPT domain", Action.PAUSE_SENDER),
        (
            "554 5.7.1 Service unavailable; Helo command [mx.example] blocked using "
            "dbl.spamhaus.org",
            Action.PAUSE_SENDER,
        ),
        ("Requested mail action not taken: Fake sender", Action.PAUSE_SENDER),
        (
            "550 5.7.512 Access denied, message must be RFC 5322 section 3.6.2 compliant",
            Action.FAIL,
        ),
        ("550 Administrative prohibition", Action.FAIL),
        ("SMTP error, DATA:554 One or more recipients are invalid and not accepted.", Action.FAIL),
        ("5.1.0 - Unknown address error 550-'5.7.0 user access deny.'", Action.FAIL),
    ],
)
def test_evidence_and_whom_it_is_about(text: str, action: Action) -> None:
    found = classify(text)
    assert found.action is action, found.rule


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("550 Benutzer unbekannt", "userunknown"),
        ("550 Empfänger existiert nicht", "userunknown"),
        ("550 Utilisateur inconnu", "userunknown"),
        ("550 l'adresse du destinataire n'existe pas", "userunknown"),
        ("550 usuario desconocido", "userunknown"),
        ("550 utente sconosciuto", "userunknown"),
        ("550 usuário não existe", "userunknown"),
        ("550 onbekende gebruiker", "userunknown"),
        ("550 użytkownik nie istnieje", "userunknown"),
        ("550 пользователь не найден", "userunknown"),
        ("552 Postfach voll", "mailboxfull"),
        ("552 boîte aux lettres pleine", "mailboxfull"),
        ("552 casella di posta piena", "mailboxfull"),
        ("550 Aucune adresse de transfert n'a été configurée.", "hasmoved"),
    ],
)
def test_the_common_languages_of_a_dead_or_full_mailbox(text: str, reason: str) -> None:
    assert classify(text).reason == reason


def test_a_rule_that_does_not_pause_fails_or_retries() -> None:
    quiet = Rule("blocked", r"our own block", pauses=False)
    assert classify("554 our own block", rules=Rules([quiet])).action is Action.FAIL
    assert classify("454 our own block", rules=Rules([quiet])).action is Action.RETRY
    assert (
        classify("554 our own block", rules=Rules([Rule("blocked", r"our own block")])).action
        is Action.PAUSE_SENDER
    )
    with pytest.raises(ValueError, match="True or False"):
        Rule("blocked", r"x", pauses="no")  # type: ignore[arg-type]
