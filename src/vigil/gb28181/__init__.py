"""GB/T 28181 runtime: devices registering to this platform (registrar, liveness, device store)."""
