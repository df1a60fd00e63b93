"""Retries and refusals of inference calls: moved to :mod:`evsys.clients.retry`, below the clients
that retry; the names stay importable from here."""

from __future__ import annotations

from evsys.clients.retry import TRANSIENT_STATUS as TRANSIENT_STATUS
from evsys.clients.retry import MalformedResponse as MalformedResponse
from evsys.clients.retry import Refusal as Refusal
from evsys.clients.retry import Refused as Refused
from evsys.clients.retry import RefusedAnswer as RefusedAnswer
from evsys.clients.retry import RetriesExhausted as RetriesExhausted
from evsys.clients.retry import RetryFailure as RetryFailure
from evsys.clients.retry import RetryReport as RetryReport
from evsys.clients.retry import TransientError as TransientError
from evsys.clients.retry import answer_or_refusal as answer_or_refusal
from evsys.clients.retry import backoff_delay as backoff_delay
from evsys.clients.retry import call_with_retry as call_with_retry
from evsys.clients.retry import retry_after_seconds as retry_after_seconds
from evsys.clients.retry import transient_status as transient_status
from evsys.clients.retry import worth_retrying as worth_retrying
