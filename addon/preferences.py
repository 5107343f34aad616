"""Add-on preferences: which Python runs the backend, the model weights, the memory mode, where
takes go, and the setup buttons (Set Up Backend, Download Weights, Check Backend).

The backend Python is either the *managed environment* the extension builds in its user folder
(setup_ops.py, env_setup.py) or an existing interpreter. The environment variable
TRAJMASTER_PYTHON, when set, wins over both (render farms, CI); TRAJMASTER_WEIGHTS likewise wins
over the weights folder.

The weights folder, memory mode and compile choice reach the backend as `--weights`/`--memory`/
`--compile` on its command line (engine_args()); runner.py restarts the worker when they change.

"Run on" chooses where takes are made: this computer (the backend above) or a TrajMaster team
server (its address and access token; server_ui.py draws that part). TRAJMASTER_SERVER and
TRAJMASTER_TOKEN win over the address and the token as the other variables do; else a token
file, if one is chosen, wins over a typed token. A typed token is kept in a file readable only
by the user in the extension's user folder, never in Blender's preferences file or a .blend.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from . import env_setup

ENV_PYTHON = "TRAJMASTER_PYTHON"
ENV_WEIGHTS = "TRAJMASTER_WEIGHTS"
ENV_SERVER = "TRAJMASTER_SERVER"
ENV_TOKEN = "TRAJMASTER_TOKEN"
PREFERENCES_PLACE = "Edit > Preferences > Add-ons > TrajMaster Previz"

# The extension's package name (bl_ext.<repo>.trajmaster_previz when installed as an extension).
PACKAGE = __package__.rpartition(".")[0]
# Folders inside the extension's user folder (kept across upgrades, unlike the extension's own).
ENV_FOLDER = "backend-env"
WEIGHTS_FOLDER = "weights"
LOGS_FOLDER = "logs"

MANAGED, CUSTOM = "MANAGED", "CUSTOM"
LOCAL, SERVER = "LOCAL", "SERVER"
TOKEN_FILE = "server-token"  # the typed token, in the extension's user folder (mode 0600)
MEMORY_MODES = (
    (
        "auto",
        "Auto",
        "Chosen from the free VRAM when the model loads (Full with 30 GiB free, Balanced with 18, else "
        "Low); after running out of memory the job is retried once in the next lower mode",
    ),
    ("full", "Full", "Everything on the GPU: fastest, about 26 GiB of VRAM"),
    ("balanced", "Balanced", "Each model on the GPU only while it runs: about 15 GiB of VRAM"),
    ("low", "Low", "Streamed to the GPU in small groups: about 4 GiB of VRAM, needs about 24 GB of RAM"),
)


class BackendNotConfigured(RuntimeError):
    pass


def user_folder(sub: str = "", *, create: bool = False) -> str:
    """A folder in the extension's user folder, kept across extension upgrades. For a legacy
    add-on install (not under bl_ext.*), which has no extension user folder: Blender's user
    config folder."""
    if PACKAGE.startswith("bl_ext."):
        try:
            return bpy.utils.extension_path_user(PACKAGE, path=sub, create=create)
        except (ValueError, RuntimeError, OSError):
            pass
    path = os.path.join("trajmaster_previz", sub) if sub else "trajmaster_previz"
    return bpy.utils.user_resource("CONFIG", path=path, create=create)


def managed_env_dir(*, create: bool = False) -> str:
    return user_folder(ENV_FOLDER, create=create)


def logs_dir() -> str:
    return user_folder(LOGS_FOLDER, create=True)


# --- the typed server token: kept out of userpref.blend ---------------------------------------

_typed_token: str | None = None  # read once from its file


def token_path() -> str:
    return os.path.join(user_folder(create=True), TOKEN_FILE)


def _get_token(_prefs: object = None) -> str:
    global _typed_token
    if _typed_token is None:
        try:
            with open(token_path(), encoding="utf-8") as f:
                _typed_token = f.readline(4096).strip()
        except (OSError, UnicodeDecodeError):
            _typed_token = ""
    return _typed_token


def _set_token(_prefs: object, value: str) -> None:
    """A get/set property stores nothing in Blender's preferences: the token goes to its own file,
    written atomically and readable by the user only (like the server's own token file)."""
    global _typed_token
    value = value.strip()
    path = token_path()
    if not value:
        try:
            os.remove(path)
        except OSError:
            pass
    else:
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(value + "\n")
        os.replace(tmp, path)
    _typed_token = value


def _server_changed(_prefs: object, _context: bpy.types.Context) -> None:
    """What Check Server said was about the previous address or token."""
    from . import server_ui

    server_ui.forget_check()


class TRAJMASTER_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = PACKAGE

    run_on: EnumProperty(
        name="Run On",
        items=(
            (LOCAL, "This Computer", "Takes are made by the backend on this computer (set up below)"),
            (
                SERVER,
                "TrajMaster Server",
                "Takes are made on a team's TrajMaster server (python -m backend server): nothing to install here",
            ),
        ),
        default=LOCAL,
        description="Where takes are made",
        update=_server_changed,
    )
    server_url: StringProperty(
        name="Server",
        description=f"The server's address, e.g. http://gpu-box:8765 ({ENV_SERVER} overrides it)",
        update=_server_changed,
    )
    server_token: StringProperty(
        name="Token",
        subtype="PASSWORD",
        description="The server's access token (the server printed it when it first started; its token file holds "
        f"it). Kept in a file only you can read, not in Blender's preferences ({ENV_TOKEN} or a token file "
        "override it)",
        get=_get_token,
        set=_set_token,
        update=_server_changed,
    )
    server_token_file: StringProperty(
        name="Token File",
        subtype="FILE_PATH",
        description=f"A file that holds the server's token, instead of typing it ({ENV_TOKEN} overrides it)",
        update=_server_changed,
    )

    python_source: EnumProperty(
        name="Backend Python",
        items=(
            (
                MANAGED,
                "Managed Environment",
                "An environment the extension creates and fills in its user folder (Set Up Backend)",
            ),
            (CUSTOM, "Existing Python", "A Python interpreter you installed the backend's packages into yourself"),
        ),
        default=MANAGED,
        description="Which Python runs the backend (TRAJMASTER_PYTHON overrides it)",
    )
    python_path: StringProperty(
        name="Python",
        subtype="FILE_PATH",
        description="The Python interpreter of the environment where the TrajMaster backend's packages are "
        "installed (TRAJMASTER_PYTHON overrides it)",
    )
    env_choice: EnumProperty(
        name="Install",
        items=(
            ("PREVIEW", "Preview Only", "Light, no GPU: the preview engine (numpy, pillow, ffmpeg); about 100 MB"),
            (
                "FULL",
                "Full Model",
                "CogVideoX-5B + 3DTrajMaster: torch with CUDA, diffusers, transformers; about "
                "6 GB, needs an NVIDIA GPU",
            ),
        ),
        # The Full Model only where an NVIDIA driver is installed (env_setup.nvidia_gpu_found): a
        # newcomer's first click must not start a 6 GB install that cannot run on their computer.
        default=env_setup.default_choice(),
        description="What the managed environment installs",
    )
    weights_folder: StringProperty(
        name="Weights Folder",
        subtype="DIR_PATH",
        description="Where the model weights are (and where Download Weights puts them). Empty: 'weights' in the "
        "extension's user folder (TRAJMASTER_WEIGHTS overrides it)",
    )
    memory_mode: EnumProperty(
        name="Memory Mode",
        items=MEMORY_MODES,
        default="auto",
        description="How much of the model stays on the GPU (the backend's --memory)",
    )
    compile_model: BoolProperty(
        name="Compile the Model",
        description="torch.compile the model's transformer blocks (the backend's --compile): the first take after "
        "the backend starts spends about a minute compiling, every later take is about a quarter faster "
        "(measured on an H100: 114 s to 86 s a take)",
        default=False,
    )
    output_folder: StringProperty(
        name="Output Folder",
        subtype="DIR_PATH",
        description="Where takes are written, in a sub-folder per scene. Empty: '//trajmaster/' next to the "
        "saved .blend file",
    )
    show_full_log: BoolProperty(name="More Lines", description="Show more lines of the log", default=False)

    def draw(self, context: bpy.types.Context) -> None:
        from . import server_ui, setup_ops  # imported here: they import this module

        layout = self.layout
        server = server_ui.draw_preferences(self, layout)
        if not server:  # with a server, nothing of this computer's backend is needed
            setup_ops.draw_backend(self, layout)
            setup_ops.draw_weights(self, layout)
        box = layout.box()
        box.label(text="Generation", icon="SETTINGS")
        col = box.column()
        if not server:
            col.prop(self, "memory_mode")
            col.prop(self, "compile_model")
        col.prop(self, "output_folder")


def preferences(context: bpy.types.Context | None = None) -> TRAJMASTER_AP_preferences | None:
    addons = (context or bpy.context).preferences.addons
    addon = addons.get(PACKAGE)
    return addon.preferences if addon is not None else None


def backend_python(context: bpy.types.Context | None = None) -> str:
    """The backend interpreter: TRAJMASTER_PYTHON, else the preference (the managed environment once
    it is ready, or the existing Python). Raises BackendNotConfigured."""
    value = os.environ.get(ENV_PYTHON, "").strip()
    if value:
        return value
    prefs = preferences(context)
    if prefs is not None and prefs.python_source == CUSTOM:
        # Quotes too: Windows Explorer's Copy as Path copies the path in double quotes.
        value = bpy.path.abspath(prefs.python_path.strip().strip('"')).strip()
    elif prefs is not None:
        state = env_setup.env_state(managed_env_dir())
        if state["ready"]:
            return state["python"]
        raise BackendNotConfigured(
            "No backend Python is set up yet: press Set Up Backend in Edit > Preferences > Add-ons > TrajMaster "
            f"Previz (or choose an existing Python there, or set the {ENV_PYTHON} environment variable)."
        )
    if not value:
        raise BackendNotConfigured(
            "No backend Python is set: choose the backend's Python in Edit > Preferences > Add-ons > "
            f"TrajMaster Previz, or set the {ENV_PYTHON} environment variable."
        )
    return value


PREFERENCES_PATH = "Edit > Preferences > Add-ons > TrajMaster Previz"


def full_model_needed(backend_message: str, context: bpy.types.Context | None = None) -> str:
    """The CogVideoX engine ran on a backend Python without the real model's packages (the
    backend's `missing_dependency` error): one sentence in the UI's words, saying which button
    gives that Python the Full Model, instead of the backend's pip command line."""
    found = re.search(r"package '([^']+)'", backend_message)
    package = f"the package '{found.group(1)}'" if found else "packages"
    preview = "or set Engine to Preview."
    if os.environ.get(ENV_PYTHON, "").strip():
        return (
            f"The CogVideoX engine needs {package}, which the backend Python set by {ENV_PYTHON} does not have: "
            f"point {ENV_PYTHON} at a Full Model environment, {preview}"
        )
    prefs = preferences(context)
    if prefs is not None and prefs.python_source == CUSTOM:
        return (
            f"The CogVideoX engine needs {package}, which the existing Python chosen in {PREFERENCES_PATH} does "
            f"not have: choose Managed Environment with Full Model there and press Set Up Backend, {preview}"
        )
    return (
        f"The CogVideoX engine needs the Full Model backend, and this one is Preview Only: in {PREFERENCES_PATH} "
        f"choose Full Model, press Update Backend (about 6 GB) and then Download Weights, {preview}"
    )


def default_weights_dir() -> str:
    return user_folder(WEIGHTS_FOLDER)


def weights_dir(context: bpy.types.Context | None = None) -> str:
    """TRAJMASTER_WEIGHTS, else the preference, else 'weights' in the extension's user folder."""
    env = os.environ.get(ENV_WEIGHTS, "").strip()
    if env:
        return os.path.expanduser(env)
    prefs = preferences(context)
    if prefs is not None and prefs.weights_folder.strip():
        return os.path.normpath(bpy.path.abspath(prefs.weights_folder.strip()))
    return default_weights_dir()


def memory_mode(context: bpy.types.Context | None = None) -> str:
    prefs = preferences(context)
    return prefs.memory_mode if prefs is not None else "auto"


def engine_args(context: bpy.types.Context | None = None) -> list[str]:
    """The backend's engine options from the preferences, for `serve` and `generate`: the weights
    folder always (the backend's own default is inside the extension's folder, which upgrades
    wipe), the memory mode when it is not the backend's default (auto), --compile when chosen."""
    args = ["--weights", weights_dir(context)]
    mode = memory_mode(context)
    if mode != "auto":
        args += ["--memory", mode]
    prefs = preferences(context)
    if prefs is not None and prefs.compile_model:
        args.append("--compile")
    return args


def output_root(context: bpy.types.Context | None = None) -> str:
    prefs = preferences(context)
    return bpy.path.abspath(prefs.output_folder) if prefs is not None and prefs.output_folder else ""


classes = (TRAJMASTER_AP_preferences,)


# Blender's own helper: registers in order, unregisters in reverse.
register, unregister = bpy.utils.register_classes_factory(classes)


# --- the team server ---------------------------------------------------------------------------


@dataclass
class ServerSettings:
    url: str
    token: str
    source: str  # where the token came from, as a refusal names it (never the token itself)


def run_on(context: bpy.types.Context | None = None) -> str:
    prefs = preferences(context)
    return prefs.run_on if prefs is not None else LOCAL


def server_url(context: bpy.types.Context | None = None) -> str:
    """TRAJMASTER_SERVER, else the preference ('' when neither is set)."""
    env = os.environ.get(ENV_SERVER, "").strip()
    if env:
        return env
    prefs = preferences(context)
    return prefs.server_url.strip() if prefs is not None else ""


def server_settings(context: bpy.types.Context | None = None) -> ServerSettings:
    """The server's address and token: TRAJMASTER_SERVER / TRAJMASTER_TOKEN, else the preferences
    (a token file wins over a typed token). Raises BackendNotConfigured with what to do."""
    from ..backend.client import ServerError, read_token_file

    url = server_url(context)
    if not url:
        raise BackendNotConfigured(
            f"No TrajMaster server is set: enter its address in {PREFERENCES_PLACE} (Run On: TrajMaster Server), "
            "or choose Run On: This Computer."
        )
    env = os.environ.get(ENV_TOKEN, "").strip()
    if env:
        return ServerSettings(url, env, f"the token in ${ENV_TOKEN}")
    prefs = preferences(context)
    path = prefs.server_token_file.strip().strip('"') if prefs is not None else ""
    if path:
        path = bpy.path.abspath(path)
        try:
            return ServerSettings(url, read_token_file(path), f"the token in {path}")
        except ServerError as exc:
            raise BackendNotConfigured(exc.message) from None
    token = _get_token()
    if token:
        return ServerSettings(url, token, "the token in the add-on's preferences")
    raise BackendNotConfigured(
        f"No token for the TrajMaster server: paste it into Token in {PREFERENCES_PLACE} (or choose its token "
        f"file there, or set ${ENV_TOKEN})."
    )
