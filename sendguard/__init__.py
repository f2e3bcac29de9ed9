"""sendguard: a send guard for outbound e-mail that keeps the sender's reputation clean."""

from sendguard._adapter import Adapter
from sendguard._address import (
    LINE_BREAKS,
    Address,
    envelope_address,
    normalize_address,
    parse_mailbox,
)
from sendguard._bounces.classify import (
    DEFAULT_RULES,
    PROVIDER_RULES,
    REASONS,
    Action,
    Classification,
    Rule,
    Rules,
    classify,
    load_rules,
)
from sendguard._bounces.dsn import BounceReport, parse_bounce
from sendguard._bounces.events import DeliveryEvent, event_from
from sendguard._errors import (
    BounceParseError,
    ConfigurationError,
    HeaderInjectionError,
    InvalidAddressError,
    MessageEncodingError,
    MessageError,
    NoRecipientsError,
    NotSentError,
    SendGuardError,
    StoreError,
    WebhookAuthError,
    WebhookPayloadError,
    WebhookUnavailableError,
)
from sendguard._guard import Guard
from sendguard._guard.facade import STREAM_HEADER, STREAMS
from sendguard._guard.outbox import OutboxEvent, OutboxRun
from sendguard._models import (
    DeliveryStatus,
    Envelope,
    RecipientResult,
    Reply,
    SendResult,
    Stage,
    Suppression,
)
from sendguard._pacing.breaker import Breaker, BreakerEvent, SenderStatus, Volume
from sendguard._pacing.retry import RetryPolicy
from sendguard._pacing.shaping import PROVIDERS, Limit, Shaping, mx_provider, parse_limit
from sendguard._pacing.warmup import WarmupSchedule
from sendguard._smtp import SMTPAdapter
from sendguard._store import (
    Admission,
    Admit,
    Outcome,
    Pause,
    Quota,
    Reservation,
    Settled,
    Shape,
    SoftBouncePolicy,
    Store,
)
from sendguard._store.memory import MemoryStore
from sendguard._store.open import open_store, store_url
from sendguard._store.outbox import Backlog, Claim, Finish, Held, Kept, Letter
from sendguard._store.redis import RedisStore
from sendguard._store.sqlite import SQLiteStore
from sendguard._sync import SyncGuard

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_RULES",
    "LINE_BREAKS",
    "PROVIDERS",
    "PROVIDER_RULES",
    "REASONS",
    "STREAMS",
    "STREAM_HEADER",
    "Action",
    "Adapter",
    "Address",
    "Admission",
    "Admit",
    "Backlog",
    "BounceParseError",
    "BounceReport",
    "Breaker",
    "BreakerEvent",
    "Claim",
    "Classification",
    "ConfigurationError",
    "DeliveryEvent",
    "DeliveryStatus",
    "Envelope",
    "Finish",
    "Guard",
    "HeaderInjectionError",
    "Held",
    "InvalidAddressError",
    "Kept",
    "Letter",
    "Limit",
    "MemoryStore",
    "MessageEncodingError",
    "MessageError",
    "NoRecipientsError",
    "NotSentError",
    "OutboxEvent",
    "OutboxRun",
    "Outcome",
    "Pause",
    "Quota",
    "RecipientResult",
    "RedisStore",
    "Reply",
    "Reservation",
    "RetryPolicy",
    "Rule",
    "Rules",
    "SMTPAdapter",
    "SQLiteStore",
    "SendGuardError",
    "SendResult",
    "SenderStatus",
    "Settled",
    "Shape",
    "Shaping",
    "SoftBouncePolicy",
    "Stage",
    "Store",
    "StoreError",
    "Suppression",
    "SyncGuard",
    "Volume",
    "WarmupSchedule",
    "WebhookAuthError",
    "WebhookPayloadError",
    "WebhookUnavailableError",
    "classify",
    "envelope_address",
    "event_from",
    "load_rules",
    "mx_provider",
    "normalize_address",
    "open_store",
    "parse_bounce",
    "parse_limit",
    "parse_mailbox",
    "store_url",
]
