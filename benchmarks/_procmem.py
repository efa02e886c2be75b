"""Process memory figures for the benchmark scripts (Linux /proc)."""


def status_kib(field):
    """A field of /proc/self/status in KiB, e.g. "VmRSS" or "VmHWM" (peak RSS)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def reset_peak():
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
