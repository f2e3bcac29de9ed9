"""sendguard: a send guard for outbound e-mail that keeps the sender's reputation clean."""

from sendguard._adapter import Adapter
from sendguard._address import (
    LINE_BREAKS,
    Address,
    envelope_address,
    normalize_address,
    parse_mailbox,
)
from sendguard._bounce import BounceReport, parse_bounce
from sendguard._breaker import Breaker, BreakerEvent, SenderStatus, Volume
from sendguard._classify import (
    DEFAULT_RULES,
    REASONS,
    Action,
    Classification,
    Rule,
    Rules,
    classify,
)
from sendguard._errors import (
    BounceParseError,
    ConfigurationError,
    HeaderInjectionError,
    InvalidAddressError,
    MessageEncodingError,
    MessageError,
    NoRecipientsError,
    SendGuardError,
    StoreError,
    WebhookAuthError,
    WebhookPayloadError,
    WebhookUnavailableError,
)
from sendguard._events import DeliveryEvent, event_from
from sendguard._guard import Guard
from sendguard._memory import MemoryStore
from sendguard._models import (
    DeliveryStatus,
    Envelope,
    RecipientResult,
    Reply,
    SendResult,
    Stage,
    Suppression,
)
from sendguard._open import open_store, store_url
from sendguard._redis import RedisStore
from sendguard._retry import RetryPolicy
from sendguard._shaping import PROVIDERS, Limit, Shaping, mx_provider, parse_limit
from sendguard._smtp import SMTPAdapter
from sendguard._sqlite import SQLiteStore
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
from sendguard._sync import SyncGuard
from sendguard._warmup import WarmupSchedule

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_RULES",
    "LINE_BREAKS",
    "PROVIDERS",
    "REASONS",
    "Action",
    "Adapter",
    "Address",
    "Admission",
    "Admit",
    "BounceParseError",
    "BounceReport",
    "Breaker",
    "BreakerEvent",
    "Classification",
    "ConfigurationError",
    "DeliveryEvent",
    "DeliveryStatus",
    "Envelope",
    "Guard",
    "HeaderInjectionError",
    "InvalidAddressError",
    "Limit",
    "MemoryStore",
    "MessageEncodingError",
    "MessageError",
    "NoRecipientsError",
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
    "mx_provider",
    "normalize_address",
    "open_store",
    "parse_bounce",
    "parse_limit",
    "parse_mailbox",
    "store_url",
]
