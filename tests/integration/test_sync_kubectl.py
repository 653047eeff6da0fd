# mypy: disallow-untyped-defs=False, disallow-incomplete-defs=False, disallow-untyped-calls=False
"""The default transport's kubectl command lines, proved without a cluster: a stand-in ``kubectl`` on
PATH records its argv and for ``exec`` starts the real agent in the "pod's" directory (its working
directory, as kubectl exec would) with the pod's environment. Selectors, faults and kubectl's own
failures are driven through the real kubectl in tests/system/test_sync_network.py."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from support import make_app, wait_for
from sync_support import control_env, first_sync_done, tree

STAND_IN = """\
#!{python}
import json, os, sys
args = sys.argv[1:]
pods = os.environ["FAKE_KUBECTL_PODS"]
with open(os.path.join(pods, "calls.jsonl"), "a") as record:
    record.write(json.dumps(args) + "\\n")
if args[0] == "get":
    with open(os.path.join(pods, "running")) as running:
        sys.stdout.write(running.read())
    sys.exit(0)
cut = args.index("--")
name = args[cut - 1].split("/")[-1]
os.chdir(os.path.join(pods, name))
env = dict(os.environ)
extra = os.path.join(pods, name + ".env.json")
if os.path.exists(extra):
    with open(extra) as values:
        env.update(json.load(values))
os.execvpe(args[cut + 1], args[cut + 1 :], env)
"""


@pytest.fixture
def cluster(tmp_path: Path) -> Path:
    """The stand-in's state: a directory per pod, ``running`` (what `get pods` lists), ``calls.jsonl``."""
    pods = tmp_path / "pods"
    pods.mkdir()
    (pods / "running").write_text("")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(STAND_IN.format(python=sys.executable))
    kubectl.chmod(0o755)
    return pods


def add_pod(cluster: Path, name: str, env: dict[str, str] | None = None) -> Path:
    directory = cluster / name
    directory.mkdir()
    if env:
        (cluster / f"{name}.env.json").write_text(json.dumps(env))
    return directory


def calls(cluster: Path) -> list[list[str]]:
    path = cluster / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def sync_env(cluster: Path) -> dict[str, str]:
    bin_dir = cluster.parent / "bin"
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_KUBECTL_PODS": str(cluster), **control_env(cluster.parent)}


def test_namespace_container_and_context_reach_kubectl_exec(run_reloadd, tmp_path: Path, cluster: Path) -> None:
    laptop = make_app(tmp_path / "laptop")
    pod = add_pod(cluster, "api-7d9f")
    sync = run_reloadd(["sync", str(laptop), "--to", "pod/api-7d9f", "-n", "dev", "-c", "app", "--context", "kind-dev"],
                       laptop, env=sync_env(cluster))  # fmt: skip
    wait_for(lambda: first_sync_done(sync), what=sync.log())
    assert calls(cluster)[0] == [
        "exec", "-i", "-n", "dev", "--context", "kind-dev", "-c", "app", "pod/api-7d9f", "--", "reloadd", "agent"
    ]  # fmt: skip
    assert tree(pod) == tree(laptop)  # no REMOTE_DIR: the container's working directory
    assert "synced 2 files (524 B) to pod/api-7d9f (2 files compared) in " in sync.log()


@pytest.mark.parametrize(
    ("to", "tail"),
    [
        ("deploy/api:{dir}", ["deploy/api", "--", "reloadd", "agent", "{dir}"]),
        ("api", ["api", "--", "reloadd", "agent"]),
    ],
)
def test_target_forms(run_reloadd, tmp_path: Path, cluster: Path, to: str, tail: list[str]) -> None:
    laptop = make_app(tmp_path / "laptop")
    pod = add_pod(cluster, "api")
    remote = tmp_path / "elsewhere"
    remote.mkdir()
    sync = run_reloadd(["sync", str(laptop), "--to", to.format(dir=remote)], laptop, env=sync_env(cluster))
    wait_for(lambda: first_sync_done(sync), what=sync.log())
    assert calls(cluster)[0] == ["exec", "-i"] + [part.format(dir=remote) for part in tail]
    assert tree(remote if "{dir}" in to else pod) == tree(laptop)


def test_a_bare_sync_goes_where_the_config_files_sync_keys_say(run_reloadd, tmp_path: Path, cluster: Path) -> None:
    laptop = make_app(tmp_path / "laptop")
    (laptop / "nodemon.json").write_text(
        json.dumps({"sync": {"to": "deploy/api", "namespace": "dev", "container": "app", "exclude": ["*.log"]}})
    )
    (laptop / "debug.log").write_text("not sent")
    pod = add_pod(cluster, "api")
    sync = run_reloadd(["sync", str(laptop)], laptop, env=sync_env(cluster))
    wait_for(lambda: first_sync_done(sync), what=sync.log())
    assert calls(cluster)[0] == ["exec", "-i", "-n", "dev", "-c", "app", "deploy/api", "--", "reloadd", "agent"]
    assert "debug.log" not in tree(pod) and tree(pod)["server.js"] == tree(laptop)["server.js"]


def test_the_command_line_wins_over_the_config_files_sync_keys(run_reloadd, tmp_path: Path, cluster: Path) -> None:
    laptop = make_app(tmp_path / "laptop")
    (laptop / "nodemon.json").write_text(json.dumps({"sync": {"to": "deploy/api", "namespace": "dev"}}))
    add_pod(cluster, "web")
    sync = run_reloadd(["sync", str(laptop), "--to", "pod/web", "-c", "box"], laptop, env=sync_env(cluster))
    wait_for(lambda: first_sync_done(sync), what=sync.log())
    assert calls(cluster)[-1] == ["exec", "-i", "-n", "dev", "-c", "box", "pod/web", "--", "reloadd", "agent"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "say where to"),
        ({"sync": {"to": ":/app"}}, "sync.to ':/app': expected TARGET"),
        ({"sync": {"to": 3}}, "key 'sync.to': expected TARGET[:DIR]"),
        ({"sync": {"onChange": [{"paths": ["package.json"]}]}}, "key 'sync.onChange.0.run'"),
    ],
)
def test_a_bad_or_missing_destination_in_the_config_is_one_line_and_exit_2(
    run_reloadd, tmp_path: Path, config: dict[str, object], message: str
) -> None:
    laptop = make_app(tmp_path / "laptop")
    (laptop / "nodemon.json").write_text(json.dumps(config))
    sync = run_reloadd(["sync", str(laptop)], laptop)
    assert sync.wait_exit() == 2
    (line,) = sync.log().strip().splitlines()
    assert message in line, sync.log()
