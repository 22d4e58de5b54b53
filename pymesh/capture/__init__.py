"""Traffic capture: the iptables rules that send a pod's TCP through its sidecar proxy.

`rules` and `settings` are pure (what to write); `apply` runs iptables-restore (writing it);
`command` is `pymesh iptables`.
"""

from pymesh.capture.apply import CaptureError, apply, clean
from pymesh.capture.rules import RuleSet, generate, plan, render
from pymesh.capture.settings import ALL, CaptureConfigError, CaptureSettings

__all__ = [
    "ALL",
    "CaptureConfigError",
    "CaptureError",
    "CaptureSettings",
    "RuleSet",
    "apply",
    "clean",
    "generate",
    "plan",
    "render",
]
