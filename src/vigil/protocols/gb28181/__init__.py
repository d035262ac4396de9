"""GB/T 28181 signalling content, sans-I/O (bytes and values in, typed values out, time passed in).

* ``manscdp``    MANSCDP XML bodies (Annex A) as typed messages; ``charset`` decides GB2312/GBK/GB18030/UTF-8.
* ``pagination`` Annex M multi-message Catalog/RecordInfo assembly.
* ``mansrtsp``   MANSRTSP playback control in INFO bodies (Annex B): PLAY/PAUSE/TEARDOWN.
* ``ptz``        PTZCmd 8-byte front-end control codes (A.3).
* ``ids``        catalog ID classes and SIP domain (Annex E, 6.1.2).
* ``ssrc``       ``y=`` SSRC values and their allocation (Annex G).
* ``errors``     the one exception tree (``Gb28181Error`` → ``ManscdpError``/``PtzError``/``SsrcError``/
  ``MansrtspError``).

Clauses and sources: the team's digest, /work/shared/docs/gb28181.md.
"""
