"""The container and Kubernetes kit, read as data: Dockerfiles, manifests, tool configs, nodemon.json.example.

Nothing here builds an image or talks to a cluster (no engine, no network). The Dockerfiles
are parsed into instructions; every Kubernetes manifest is validated against the API schemas
shipped with kubernetes-validate; DevSpace, Skaffold and Compose files are loaded as YAML. The
tests pin the properties the kit exists for: reloadd is PID 1 (exec-form entrypoints, no
shell in between), the grace period outlasts reloadd's stop-timeout, debug and sync ports stay
off Services, and production is the same image with NODE_ENV=production.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any, NamedTuple, Optional

import kubernetes_validate
import pytest
import yaml
from support import reloadd_argv

from reloadd.setup import config, settings, shapes

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
KUBERNETES = EXAMPLES / "kubernetes"
EXPRESS = EXAMPLES / "express"
MANIFESTS = sorted(KUBERNETES.glob("deployment-*.yaml"))
APP_COMMAND = ["node", "server.js"]
SYNCTHING_PORTS = {8384, 22000, 21027}  # GUI, sync protocol, local discovery
INSPECTOR_PORT = 9229
APP_PORT = 3000


# ---------------------------------------------------------------- Dockerfiles


class Instruction(NamedTuple):
    keyword: str  # upper case: FROM, RUN, ...
    args: str  # the rest of the (joined) line
    line: int  # 1-based line where it starts


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined; comments and blank lines dropped."""
    found: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comments inside a continued instruction are removed by the builder
        if not pending:
            start = number
        pending.append(stripped[:-1].rstrip() if stripped.endswith("\\") else stripped)
        if not stripped.endswith("\\"):
            keyword, _, args = " ".join(pending).partition(" ")
            found.append(Instruction(keyword.upper(), args.strip(), start))
            pending = []
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return found


def exec_form(instruction: Instruction) -> Optional[list[str]]:
    """The JSON array of an exec-form instruction, or None for shell form."""
    try:
        value = json.loads(instruction.args)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) and all(isinstance(item, str) for item in value) else None


def only(instructions: list[Instruction], keyword: str) -> list[Instruction]:
    return [instruction for instruction in instructions if instruction.keyword == keyword]


def header(text: str) -> str:
    """The comment block the file starts with."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)


@pytest.fixture(scope="module")
def base() -> list[Instruction]:
    return parse_dockerfile((ROOT / "Dockerfile.base").read_text())


def test_parser_joins_continuations_and_tells_exec_from_shell_form() -> None:
    parsed = parse_dockerfile('# c\nRUN a \\\n  # inner\n  && b\nCMD ["x", "y"]\nENTRYPOINT reloadd --\n')
    assert parsed[0] == Instruction("RUN", "a && b", 2)
    assert exec_form(parsed[1]) == ["x", "y"]
    assert exec_form(parsed[2]) is None


def test_base_entrypoint_is_reloadd_in_exec_form(base: list[Instruction]) -> None:
    entrypoints = only(base, "ENTRYPOINT")
    assert len(entrypoints) == 1
    assert exec_form(entrypoints[0]) == ["reloadd", "--"]


def test_base_has_no_shell_form_entrypoint_or_cmd(base: list[Instruction]) -> None:
    """Shell form runs `/bin/sh -c`, which becomes PID 1 and neither forwards SIGTERM nor reaps."""
    for instruction in only(base, "ENTRYPOINT") + only(base, "CMD"):
        assert exec_form(instruction) is not None, f"line {instruction.line}: shell form {instruction.args}"
    cmds = only(base, "CMD")
    assert cmds and exec_form(cmds[-1]) == APP_COMMAND  # the default command


def test_base_is_node_slim_with_a_node_version_argument(base: list[Instruction]) -> None:
    froms = only(base, "FROM")
    assert len(froms) == 1
    arg_lines = [i.line for i in only(base, "ARG") if i.args.split("=")[0] == "NODE_VERSION"]
    assert arg_lines and arg_lines[0] < froms[0].line  # an ARG used in FROM must come before it
    image = froms[0].args.split()[0]
    assert re.fullmatch(r"node:\$\{NODE_VERSION\}-[a-z]*-?slim", image), image


def test_base_runs_as_node_in_app(base: list[Instruction]) -> None:
    users = only(base, "USER")
    assert users and users[-1].args == "node"
    workdirs = only(base, "WORKDIR")
    assert workdirs and workdirs[-1].args == "/app"
    # /app is handed to node before the switch, or the unprivileged user could not write in it
    assert any("chown node:node /app" in run.args and run.line < users[-1].line for run in only(base, "RUN"))


def test_base_installs_this_package_from_the_build_context_into_a_venv(base: list[Instruction]) -> None:
    copies = " ".join(copy.args for copy in only(base, "COPY"))
    for needed in ("pyproject.toml", "reloadd"):
        assert needed in copies.split(), f"{needed} is not copied from the build context"
    for source in copies.split()[:-1]:
        if not source.startswith("/") and not source.startswith("--"):
            assert (ROOT / source).exists(), f"COPY source {source} is not in the repository"
    runs = " && ".join(run.args for run in only(base, "RUN"))
    venv = re.search(r"python3 -m venv (\S+)", runs)
    assert venv, "no venv is created"
    assert re.search(rf"{re.escape(venv.group(1))}/bin/pip install [^&]*/tmp/reloadd-src", runs)
    env = " ".join(e.args for e in only(base, "ENV"))
    assert f"PATH={venv.group(1)}/bin:$PATH" in env  # so that `reloadd` in ENTRYPOINT resolves


def test_base_header_shows_how_to_build_and_use_it() -> None:
    text = header((ROOT / "Dockerfile.base").read_text())
    assert "docker build -f Dockerfile.base" in text
    assert re.search(r"^#\s+FROM reloadd-node", text, re.MULTILINE)


def test_example_dev_image_builds_on_the_base_and_keeps_its_entrypoint() -> None:
    instructions = parse_dockerfile((EXPRESS / "Dockerfile.dev").read_text())
    assert only(instructions, "FROM")[0].args == "${BASE_IMAGE}"
    assert "BASE_IMAGE=reloadd-node:20" in [i.args for i in only(instructions, "ARG")]
    assert not only(instructions, "ENTRYPOINT")  # inherits ["reloadd", "--"]
    assert exec_form(only(instructions, "CMD")[-1]) == APP_COMMAND
    assert any("npm ci" in run.args for run in only(instructions, "RUN"))


# ---------------------------------------------------------------- Kubernetes manifests


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def by_kind(path: Path, kind: str) -> list[dict[str, Any]]:
    return [doc for doc in load_all(path) if doc["kind"] == kind]


def pod_spec(path: Path) -> dict[str, Any]:
    (deployment,) = by_kind(path, "Deployment")
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def app_container(path: Path) -> dict[str, Any]:
    (container,) = [c for c in pod_spec(path)["containers"] if c["name"] == "app"]
    return dict(container)


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container.get("env", [])}


def stop_timeout(argv: list[str], env: dict[str, str]) -> float:
    """reloadd's effective stop-timeout: the flag, else RELOADD_STOP_TIMEOUT, else the default."""
    options = argv[: argv.index("--")] if "--" in argv else argv
    for index, option in enumerate(options):
        if option == "--stop-timeout":
            return float(options[index + 1])
        if option.startswith("--stop-timeout="):
            return float(option.split("=", 1)[1])
    return float(env.get("RELOADD_STOP_TIMEOUT", settings.DEFAULT_STOP_TIMEOUT))


def image_repository(image: str) -> str:
    return image.rsplit(":", 1)[0]


def test_every_manifest_is_found() -> None:
    names = {path.name for path in MANIFESTS}
    assert {"deployment-dev.yaml", "deployment-prod.yaml", "deployment-sync.yaml"} <= names


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_validates_against_the_kubernetes_schema(path: Path) -> None:
    version = kubernetes_validate.latest_version()
    for doc in load_all(path):
        kubernetes_validate.validate(doc, version, strict=True)  # strict: unknown fields are errors


def test_schema_validation_catches_a_misplaced_field() -> None:
    """The validation above can fail: the same manifest with a typo does not validate."""
    (deployment,) = by_kind(KUBERNETES / "deployment-dev.yaml", "Deployment")
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 10
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_grace_period_outlasts_reloadds_stop_timeout(path: Path) -> None:
    """The kubelet's SIGKILL at the end of the grace period must not cut reloadd's stop ladder short."""
    container = app_container(path)
    argv = container.get("command", ["reloadd", "--"]) + container.get("args", [])
    grace = pod_spec(path).get("terminationGracePeriodSeconds", 30)
    assert grace > stop_timeout(argv, env_of(container))
    assert "terminationGracePeriodSeconds" in pod_spec(path), "set it explicitly, with the reason next to it"


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_reloadd_is_pid_1_of_the_app_container(path: Path) -> None:
    spec = pod_spec(path)
    assert not spec.get("shareProcessNamespace"), "with a shared namespace the pause container is PID 1"
    container = app_container(path)
    command = container.get("command")
    if command is not None:  # else the image's ENTRYPOINT ["reloadd", "--"] with CMD node server.js
        assert command[0] == "reloadd" and "--" in command
        assert command[command.index("--") + 1 :] == APP_COMMAND
    assert "args" not in container or container["args"] == APP_COMMAND


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_app_listens_on_the_pod_network_and_the_inspector_only_on_loopback(path: Path) -> None:
    container = app_container(path)
    assert env_of(container)["HOST"] == "0.0.0.0"
    assert env_of(container)["PORT"] == str(APP_PORT)
    assert [p["containerPort"] for p in container["ports"]] == [APP_PORT]
    assert not any("0.0.0.0" in part for part in container.get("command", []) if part.startswith("--inspect"))
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_services_expose_only_the_app(path: Path) -> None:
    services = by_kind(path, "Service")
    assert services
    for service in services:
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ("http", APP_PORT)
            assert port["port"] not in SYNCTHING_PORTS | {INSPECTOR_PORT}
    pod_ports = {p["containerPort"] for c in pod_spec(path)["containers"] for p in c.get("ports", [])}
    assert not pod_ports & (SYNCTHING_PORTS | {INSPECTOR_PORT})


def test_dev_pod_runs_from_an_emptydir_filled_by_a_syncthing_sidecar() -> None:
    path = KUBERNETES / "deployment-dev.yaml"
    spec = pod_spec(path)
    app = app_container(path)
    (sidecar,) = [c for c in spec["containers"] if c["image"].startswith("syncthing/syncthing")]
    app_mount = next(m for m in app["volumeMounts"] if m["mountPath"] == app["workingDir"])
    assert app["workingDir"] == "/app"
    assert app_mount["name"] in {m["name"] for m in sidecar["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[app_mount["name"]]
    assert env_of(sidecar)["STGUIADDRESS"].startswith("127.0.0.1:")  # GUI: port-forward only
    (seed,) = spec["initContainers"]  # the image's code and node_modules, before the first sync
    assert seed["image"] == app["image"]
    assert seed["command"][:2] == ["cp", "-a"]
    assert "--inspect" in app["command"][: app["command"].index("--")]


def test_reloadd_sync_pod_has_no_sidecar_and_its_role_grants_only_exec() -> None:
    path = KUBERNETES / "deployment-reloadd-sync.yaml"
    spec = pod_spec(path)
    (app,) = spec["containers"]  # the pod side of the sync is `reloadd agent`, started by kubectl exec
    assert app["workingDir"] == "/app" and "initContainers" not in spec and "volumes" not in spec
    assert "RELOADD_SYNC" not in env_of(app) and "NODE_ENV" not in env_of(app)
    (role,) = by_kind(path, "Role")
    granted = {resource: set(rule["verbs"]) for rule in role["rules"] for resource in rule["resources"]}
    assert granted == {"pods": {"get", "list", "watch"}, "pods/exec": {"create", "get"}, "deployments": {"get"}}
    (binding,) = by_kind(path, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_prod_is_the_same_image_with_node_env_production() -> None:
    prod = app_container(KUBERNETES / "deployment-prod.yaml")
    dev = app_container(KUBERNETES / "deployment-dev.yaml")
    assert image_repository(prod["image"]) == image_repository(dev["image"])
    assert env_of(prod)["NODE_ENV"] == "production"
    assert "RELOADD_WATCH" not in env_of(prod)  # would switch watching back on
    assert "RELOADD_SYNC" not in env_of(prod)  # would let `reloadd sync` replace production code
    assert prod["command"] == ["reloadd", "--", *APP_COMMAND]  # reloadd as a plain init, said where it is read
    volumes = pod_spec(KUBERNETES / "deployment-prod.yaml").get("volumes", [])
    assert not any("hostPath" in volume for volume in volumes)  # the code comes from the image, not a mount


def test_every_example_image_is_built_by_a_documented_command() -> None:
    """A manifest's image that nothing builds is a dead end for whoever applies it."""
    documented = (ROOT / "docs/kubernetes.md").read_text() + (ROOT / "README.md").read_text()
    for path in MANIFESTS:
        image = app_container(path)["image"]
        built = re.search(rf"docker build [^\n]*-t {re.escape(image)}(\s|$)", documented + path.read_text())
        assert built, f"{path.name}: nothing documents how to build {image}"


# ---------------------------------------------------------------- DevSpace, Skaffold, Compose


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def test_devspace_syncs_into_app_and_lets_reloadd_restart() -> None:
    devspace = load(KUBERNETES / "devspace.yaml")
    assert devspace["version"] == "v2beta1"
    (dev,) = devspace["dev"].values()
    command = dev["command"]
    assert command[0] == "reloadd" and command[command.index("--") + 1 :] == APP_COMMAND
    (sync,) = dev["sync"]
    local, remote = sync["path"].rsplit(":", 1)
    assert remote == "/app" and (KUBERNETES / local / "server.js").exists()
    assert "node_modules/" in sync["excludePaths"]
    assert not sync.get("onUpload", {}).get("restartContainer")  # reloadd restarts, not DevSpace's helper
    assert not dev.get("restartHelper", {}).get("inject")
    assert {entry["port"] for entry in dev["ports"]} == {str(APP_PORT), str(INSPECTOR_PORT)}
    for deployment in devspace["deployments"].values():
        for manifest in deployment["kubectl"]["manifests"]:
            assert (KUBERNETES / manifest).exists()
    (image,) = devspace["images"].values()
    assert (KUBERNETES / image["dockerfile"]).exists() and (KUBERNETES / image["context"]).is_dir()


def test_skaffold_syncs_files_by_hand_and_forwards_app_and_inspector() -> None:
    skaffold = load(KUBERNETES / "skaffold.yaml")
    assert skaffold["apiVersion"].startswith("skaffold/v4") and skaffold["kind"] == "Config"
    (artifact,) = skaffold["build"]["artifacts"]
    context = KUBERNETES / artifact["context"]
    assert (context / artifact["docker"]["dockerfile"]).exists()
    rules = artifact["sync"]["manual"]
    assert rules and all(rule["dest"] == "." for rule in rules)  # relative to the image's WORKDIR, /app
    assert any(rule["src"].startswith("routes/") for rule in rules)
    assert all(list(context.glob(rule["src"])) for rule in rules), "a sync rule matches no file"
    forwarded = {entry["port"] for entry in skaffold["portForward"]}
    assert forwarded == {APP_PORT, INSPECTOR_PORT}
    manifests = skaffold["manifests"]["rawYaml"]
    for manifest in manifests:
        images = [c["image"] for c in pod_spec(KUBERNETES / manifest)["containers"]]
        assert artifact["image"] in {image_repository(image) for image in images}
        assert app_container(KUBERNETES / manifest)["command"][0] == "reloadd"


def test_compose_bind_mounts_the_app_under_reloadd() -> None:
    compose = load(EXAMPLES / "docker-compose.yml")
    app = compose["services"]["app"]
    entrypoint = app["entrypoint"]
    assert entrypoint[0] == "reloadd" and entrypoint[-1] == "--"
    assert app["command"] == APP_COMMAND
    assert app["init"] is False  # reloadd is the init
    assert "./express:/app" in app["volumes"]
    assert "/app/node_modules" in app["volumes"]  # the image's node_modules survive the bind mount
    assert (EXAMPLES / app["build"]["context"] / app["build"]["dockerfile"]).exists()
    grace = float(app["stop_grace_period"].rstrip("s"))
    assert grace > stop_timeout(entrypoint, {k: str(v) for k, v in app["environment"].items()})
    published = {port.rsplit(":", 1)[-1]: port for port in app["ports"]}
    assert set(published) == {str(APP_PORT), str(INSPECTOR_PORT)}
    assert all(port.startswith("127.0.0.1:") for port in published.values())  # the inspector runs any code


# ---------------------------------------------------------------- config examples


def test_nodemon_json_example_is_valid_and_shows_every_key() -> None:
    raw = json.loads((ROOT / "nodemon.json.example").read_text())
    loaded = config.validate(raw, "nodemon.json.example")
    aliases = shapes.keys(settings.Settings)
    assert aliases - set(raw) == set(), "keys missing from nodemon.json.example"
    assert set(raw) - aliases == set(), "keys reloadd does not know"
    assert loaded.hot is not None and loaded.hot.paths
    for command in raw["events"].values():
        shlex.split(command)  # each is a well-formed `sh -c` command
    assert set(raw["events"]) == set(config.EVENT_NAMES)


def test_reloadd_loads_nodemon_json_example_as_a_config_file(tmp_path: Path) -> None:
    """Beyond the model: the real config loader and command builder accept it (``--dump`` exits 0)."""
    (tmp_path / "server.js").write_text("")
    done = subprocess.run(
        reloadd_argv() + ["--config", str(ROOT / "nodemon.json.example"), "--dump"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    dumped = json.loads(done.stdout)
    assert dumped["command"][0] == "node" and "server.js" in dumped["command"]
    assert "--inspect=127.0.0.1:9229" in dumped["command"]
    assert dumped["config"]["legacyWatch"] is None  # null = decide per mount


def test_example_apps_nodemon_json_sends_route_changes_hot() -> None:
    raw = json.loads((EXPRESS / "nodemon.json").read_text())
    settings = config.validate(raw, "examples/express/nodemon.json")
    assert settings.hot is not None and settings.hot.paths == ["routes/**"]
    assert settings.hot.signal == "SIGHUP"  # what server.js listens for
    package = json.loads((EXPRESS / "package.json").read_text())
    assert package["main"] == "server.js" and package["scripts"]["dev"] == "exec reloadd"
    assert "express" in package["dependencies"]


# ---------------------------------------------------------------- docs


def test_kubernetes_doc_covers_every_sync_option_and_the_debug_loop() -> None:
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    for topic in ("Syncthing", "DevSpace", "Skaffold", "Telepresence", "minikube mount", "9p", "sshfs"):
        assert topic in text, topic
    assert "kubectl port-forward pod/" in text and "9229:9229" in text
    assert "terminationGracePeriodSeconds" in text and "stop-timeout" in text
    assert "NODE_ENV=production" in text
    assert "reloadd sync" in text and "pods/exec" in text and "RELOADD_SYNC=1" in text
    for link in re.findall(r"\]\((\.\./[^)#]+)\)", text):
        assert (ROOT / "docs" / link).resolve().exists(), f"broken link {link}"
