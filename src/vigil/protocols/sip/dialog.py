"""SIP dialogs (RFC 3261 §12): the state that in-dialog requests — ACK, BYE, INFO, NOTIFY, re-SUBSCRIBE — reuse.

GB/T 28181 uses two kinds: an INVITE media session (ACK, then INFO for playback control and
BYE from either side) and a SUBSCRIBE subscription (NOTIFYs, refreshes). A dialog is
identified by Call-ID plus both tags; in-dialog requests go to the peer's Contact (the
remote target) with our CSeq counting up. Route sets (Record-Route) are not kept: GB/T 28181
peers talk directly, without proxies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vigil.protocols.sip.message import MAX_CSEQ, Address, SipError, SipRequest, SipResponse, Via, make_request

__all__ = ["Dialog", "DialogKey", "incoming_dialog_key"]

#: (Call-ID, local tag, remote tag).
DialogKey = tuple[str, str, str]


def incoming_dialog_key(request: SipRequest) -> DialogKey:
    """The key of the dialog a received in-dialog request belongs to (its To tag is ours); raises :class:`SipError`."""
    local_tag = request.to_address.tag
    remote_tag = request.from_address.tag
    if not local_tag or not remote_tag:
        raise SipError("request is not inside a dialog (To or From has no tag)")
    return request.call_id, local_tag, remote_tag


@dataclass(slots=True)
class Dialog:
    """One dialog seen from our side."""

    call_id: str
    local_tag: str
    remote_tag: str
    #: Our From URI in in-dialog requests.
    local_uri: str
    #: The peer's URI (To of in-dialog requests).
    remote_uri: str
    #: Request-URI of in-dialog requests: the peer's Contact.
    remote_target: str
    #: The CSeq of the last request we sent in this dialog.
    local_seq: int
    #: The CSeq of the last request the peer sent in this dialog, None until one arrives.
    remote_seq: int | None = None

    @classmethod
    def as_uac(cls, request: SipRequest, response: SipResponse) -> Dialog:
        """The dialog our INVITE/SUBSCRIBE created when ``response`` (2xx, or 1xx with a To tag) arrived."""
        local, remote = request.from_address, response.to_address
        if not local.tag or not remote.tag:
            raise SipError("a dialog needs tags on both From (ours) and To (theirs)")
        contacts = response.contacts
        target = contacts[0].uri if contacts else request.uri
        return cls(response.call_id, local.tag, remote.tag, local.uri, remote.uri, target, request.cseq.number)

    @classmethod
    def as_uas(cls, request: SipRequest, local_tag: str, *, local_seq: int = 0) -> Dialog:
        """The dialog a received INVITE/SUBSCRIBE creates when we answer it with To tag ``local_tag``."""
        remote = request.from_address
        if not remote.tag:
            raise SipError("the dialog-creating request has no From tag")
        contacts = request.contacts
        target = contacts[0].uri if contacts else remote.uri
        dialog = cls(request.call_id, local_tag, remote.tag, request.to_address.uri, remote.uri, target, local_seq)
        dialog.remote_seq = request.cseq.number
        return dialog

    @property
    def key(self) -> DialogKey:
        """(Call-ID, local tag, remote tag), comparable with :func:`incoming_dialog_key`."""
        return self.call_id, self.local_tag, self.remote_tag

    def accept_remote_cseq(self, request: SipRequest) -> bool:
        """Record a received in-dialog request's CSeq; False when it is lower than the last (answer 500)."""
        number = request.cseq.number
        if request.method == "ACK":
            return True  # ACK repeats the INVITE's number
        if self.remote_seq is not None and number < self.remote_seq:
            return False
        self.remote_seq = number
        return True

    def make_request(
        self,
        method: str,
        *,
        via: Via,
        contact: Address | None = None,
        extra: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> SipRequest:
        """A new in-dialog request (BYE, INFO, NOTIFY, SUBSCRIBE refresh…) with the next CSeq."""
        if method in ("ACK", "CANCEL"):
            raise ValueError(f"{method} reuses the INVITE's CSeq; use make_ack or a CANCEL built from the INVITE")
        self.local_seq += 1
        return self._request(method, self.local_seq, via, contact, extra, body, content_type)

    def make_ack(self, invite_cseq: int, *, via: Via) -> SipRequest:
        """The ACK for a 2xx to our INVITE (a new transaction, same CSeq number; RFC 3261 §13.2.2.4)."""
        return self._request("ACK", invite_cseq, via, None, (), b"", None)

    def _request(
        self,
        method: str,
        number: int,
        via: Via,
        contact: Address | None,
        extra: Iterable[tuple[str, str]],
        body: bytes,
        content_type: str | None,
    ) -> SipRequest:
        if not 0 <= number <= MAX_CSEQ:
            raise SipError(f"CSeq {number} is outside 0..2**31-1")
        return make_request(
            method,
            self.remote_target,
            via=via,
            from_address=Address(self.local_uri).with_param("tag", self.local_tag),
            to_address=Address(self.remote_uri).with_param("tag", self.remote_tag),
            call_id=self.call_id,
            cseq=number,
            contact=contact,
            extra=extra,
            body=body,
            content_type=content_type,
        )
