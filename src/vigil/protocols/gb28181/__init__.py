"""GB/T 28181 signalling content, sans-I/O: MANSCDP bodies, PTZCmd bytes, ID classes and SSRC allocation.

See docs/gb28181 digest (/work/shared/docs/gb28181.md) for the clauses each module follows.
"""
