"""The web client in `web/` cannot drift from the API or from the bundle the server ships:
the OpenAPI document and the types generated from it are current, the TypeScript compiles in
strict mode, its unit tests pass, and the committed bundle is exactly what the lockfile's
toolchain builds from the source. (Needs `npm ci --prefix web`, part of the test command.)"""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
BUNDLE = ROOT / "infrastructure" / "web" / "client"
CHRONICLE = str(Path(sys.executable).parent / "chronicle")


def npx(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    assert (WEB / "node_modules").is_dir(), "run `npm ci --prefix web` first (the README's test command does)"
    return subprocess.run(["npx", "--no-install", *args], cwd=WEB, capture_output=True, text=True, timeout=timeout)


def test_the_committed_openapi_document_is_the_apis(tmp_path):
    current = tmp_path / "openapi.json"
    made = subprocess.run([CHRONICLE, "openapi", "-o", str(current)], capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    assert current.read_text() == (WEB / "openapi.json").read_text(), (
        "web/openapi.json is stale: run `chronicle openapi -o web/openapi.json && npm run gen:api --prefix web`"
    )


def test_the_committed_frame_schema_is_the_streams(tmp_path):
    current = tmp_path / "frames.schema.json"
    made = subprocess.run([CHRONICLE, "frame-schema", "-o", str(current)], capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    assert current.read_text() == (WEB / "frames.schema.json").read_text(), (
        "web/frames.schema.json is stale: run `chronicle frame-schema -o web/frames.schema.json`"
    )


def test_the_api_types_are_generated_from_the_committed_document(tmp_path):
    out = tmp_path / "schema.d.ts"
    made = npx("openapi-typescript", "./openapi.json", "-o", str(out))
    assert made.returncode == 0, made.stderr
    assert out.read_text() == (WEB / "src" / "api" / "schema.d.ts").read_text(), "run `npm run gen:api --prefix web`"


def test_the_frame_types_are_generated_from_the_committed_frame_schema(tmp_path):
    out = tmp_path / "frames.schema.d.ts"
    made = npx("json2ts", "-i", "./frames.schema.json", "-o", str(out), "--unreachableDefinitions")
    assert made.returncode == 0, made.stderr
    assert out.read_text() == (WEB / "src" / "api" / "frames.schema.d.ts").read_text(), "run `npm run gen:frames --prefix web`"


def test_the_client_type_checks_in_strict_mode_and_its_unit_tests_pass():
    checked = npx("vue-tsc", "--noEmit")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = npx("vitest", "run")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def _differences(left: Path, right: Path) -> list[str]:
    compared = filecmp.dircmp(left, right)
    found = [f"only in the build: {n}" for n in compared.left_only] + [f"only committed: {n}" for n in compared.right_only]
    found += [f"differs: {n}" for n in filecmp.cmpfiles(left, right, compared.common_files, shallow=False)[1]]
    for sub in compared.common_dirs:
        found += [f"{sub}/{d}" for d in _differences(left / sub, right / sub)]
    return found


def test_the_committed_bundle_is_what_the_source_builds(tmp_path):
    out = tmp_path / "client"
    built = npx("vite", "build", "--outDir", str(out), "--emptyOutDir")
    assert built.returncode == 0, built.stdout + built.stderr
    assert _differences(out, BUNDLE) == [], "the committed bundle is stale: run `npm run build --prefix web`"
