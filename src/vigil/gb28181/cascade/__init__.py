"""Vigil as a lower platform: registering to upper GB/T 28181 platforms and answering them (cascade).

* :mod:`.client` — per upper platform: REGISTER with digest, Keepalive, refresh, offline after 3
  failures and recovery with backoff (UDP, or one TCP connection of ours).
* :mod:`.shares` / :mod:`.answers` — pure: what is shared with that upper platform, and the MANSCDP
  answers over it (Catalog pages, DeviceInfo, DeviceStatus, RecordInfo).
* :mod:`.handler` — the upper platform's requests, each audited; :mod:`.sessions` its INVITEs (live
  and playback); :mod:`.subscriptions` its catalog subscription and our NOTIFYs.
* :mod:`.relay` — one stream as PS over RTP (UDP, TCP active/passive); :mod:`.recorded` Vigil's
  recording read back in real time for playback.
* :mod:`.store` — configuration, shares, events and recordings in the database.
* :mod:`.service` — :class:`~.service.Cascade`, one client + handler per enabled upper platform.
"""
