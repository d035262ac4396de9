"""Vigil as a lower platform: registering to upper GB/T 28181 platforms and answering them (cascade).

* :mod:`.client` — per upper platform: REGISTER with digest, Keepalive, refresh, offline after 3
  failures and recovery with backoff.
* :mod:`.answers` — pure builders of the MANSCDP answers (Catalog pages, DeviceInfo, DeviceStatus,
  RecordInfo) over what is shared with that upper platform.
* :mod:`.handler` — the upper platform's requests (MESSAGE queries, INVITE/ACK/BYE), each audited.
* :mod:`.relay` — one live stream relayed from the hub as PS over RTP to the upper platform.
* :mod:`.store` — configuration, shares and events in the database.
* :mod:`.service` — :class:`Cascade`, which runs one client + handler per enabled upper platform.
"""
