"""cgrad runs on the CPU: CUDA is never available (as `torch.cuda` on a CPU-only build)."""


def is_available() -> bool:
    return False


def device_count() -> int:
    return 0
