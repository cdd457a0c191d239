"""Model weights onto this machine: `servestack pull`, offline-first.

reference.py        ORG/NAME, ORG/NAME:QUANT, modelscope:ORG/NAME
selection.py        which files of a repository to fetch (one GGUF quant, one weight set)
space.py            the free-space check before anything is downloaded
hub.py              the Hub protocol both hubs implement, and the file listing they return
huggingface.py      Hugging Face via huggingface_hub (HF cache or a plain folder); imported on use
hf_environment.py   HF_ENDPOINT, HF_TOKEN, HF_HOME/HF_HUB_CACHE, HF_HUB_OFFLINE from a mapping
modelscope.py       ModelScope via the optional `modelscope` package
pull.py             list → choose → skip complete files → check space → download
"""

from servestack.downloads.hf_environment import HfEnvironment
from servestack.downloads.hub import Hub, HubUnreachable, Listing, RemoteFile
from servestack.downloads.modelscope import ModelScopeClient, ModelScopeHub
from servestack.downloads.progress import ProgressListener, SilentProgress
from servestack.downloads.pull import PullResult, PullStatus, make_hub, pull_model
from servestack.downloads.reference import HubName, ModelReference, looks_like_hub_reference, parse_reference
from servestack.downloads.selection import Selection, select_files
from servestack.downloads.space import check_disk_space, disk_free_bytes, format_bytes

__all__ = [
    "HfEnvironment",
    "Hub",
    "HubName",
    "HubUnreachable",
    "Listing",
    "ModelReference",
    "ModelScopeClient",
    "ModelScopeHub",
    "ProgressListener",
    "PullResult",
    "PullStatus",
    "RemoteFile",
    "Selection",
    "SilentProgress",
    "check_disk_space",
    "disk_free_bytes",
    "format_bytes",
    "looks_like_hub_reference",
    "make_hub",
    "parse_reference",
    "pull_model",
    "select_files",
]
