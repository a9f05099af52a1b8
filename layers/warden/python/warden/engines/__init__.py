"""Engine adapters: one module per engine, the same small interface for each."""
