"""android_demo/core (the app's pixels -> tensor -> ranked labels code, plain Java) compiled with
javac and its JUnit 4 tests run, against the golden vectors of scripts/make_android_golden.py.

No Gradle, Android SDK or Maven download: a JDK and the Gson, JUnit 4 and Hamcrest jars of Debian's
packages are enough. Where they are missing the tests are skipped, except in CI (CI set), where
they fail and name the packages. KERASCNN_JAVA_LIBS overrides the jars' folder (/usr/share/java).
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "android_demo" / "core"
MAIN = CORE / "src" / "main" / "java"
TEST = CORE / "src" / "test" / "java"
RESOURCES = CORE / "src" / "test" / "resources"

JAVA_DIR = Path(os.environ.get("KERASCNN_JAVA_LIBS", "/usr/share/java"))
# jar -> Debian package that installs it
JARS = {"gson.jar": "libgoogle-gson-java", "junit4.jar": "junit4",
        "hamcrest-core.jar": "libhamcrest-java"}  # junit4 depends on libhamcrest-java
JDK_PACKAGE = "default-jdk-headless"


def _missing():
    missing = {}
    for tool in ("javac", "java"):
        if shutil.which(tool) is None:
            missing[tool] = JDK_PACKAGE
    for jar, package in JARS.items():
        if not (JAVA_DIR / jar).is_file():
            missing[str(JAVA_DIR / jar)] = package
    return missing


def _require_toolchain():
    missing = _missing()
    if not missing:
        return
    packages = " ".join(sorted({JDK_PACKAGE, *JARS.values()}))
    message = (f"android_demo/core needs a JDK, JUnit 4 and Gson: apt-get install {packages} "
               f"(missing here: {', '.join(sorted(missing))})")
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(message)
    pytest.skip(message)


def _run(cmd, **kwargs):
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)
    return result.returncode, result.stdout + result.stderr


def _compile(tmp_path):
    classpath = os.pathsep.join(str(JAVA_DIR / jar) for jar in JARS)
    main_out, test_out = tmp_path / "main", tmp_path / "test"
    main_sources = sorted(str(p) for p in MAIN.rglob("*.java"))
    test_sources = sorted(str(p) for p in TEST.rglob("*.java"))
    assert main_sources and test_sources
    # --release 8 keeps the core to the Java 8 library (Android API 24 has it; List.of, Stream
    # additions and the like would compile for the JVM and fail on older phones).
    # -Xlint:-options: newer JDKs warn that release 8 is obsolete; that is not the core's fault.
    code, out = _run(["javac", "--release", "8", "-Xlint:all", "-Xlint:-options", "-Werror",
                      "-encoding", "UTF-8",
                      "-cp", classpath, "-d", str(main_out), *main_sources])
    assert code == 0, f"javac (core main) failed:\n{out}"
    code, out = _run(["javac", "--release", "17", "-encoding", "UTF-8",
                      "-cp", os.pathsep.join([str(main_out), classpath]), "-d", str(test_out),
                      *test_sources])
    assert code == 0, f"javac (core tests) failed:\n{out}"
    return os.pathsep.join([str(test_out), str(main_out), str(RESOURCES), classpath]), test_out


def test_core_compiles_and_junit_passes(tmp_path):
    _require_toolchain()
    classpath, test_out = _compile(tmp_path)
    classes = sorted(".".join(p.relative_to(test_out).with_suffix("").parts)
                     for p in test_out.rglob("*Test.class"))
    assert classes, "no *Test classes compiled"
    expected = sum(p.read_text().count("@Test") for p in TEST.rglob("*Test.java"))
    code, out = _run(["java", "-cp", classpath, "org.junit.runner.JUnitCore", *classes])
    assert code == 0 and f"OK ({expected} tests)" in out, out[-8000:]


def test_app_parser_accepts_fresh_exports(tmp_path):
    """BundleMetadata (what the app runs at start-up) reads what the exporter writes today, not only
    the committed fixtures: a 3-channel int8 and a 1-channel uint8 bundle."""
    _require_toolchain()
    import numpy as np

    import kerascnn
    from kerascnn.export import export

    bundles = []
    for name, shape, io_dtype, kwargs in [("mobilenet_v2", (32, 32, 3), "int8", {"alpha": 0.35}),
                                          ("lenet5", (32, 32, 1), "uint8", {})]:
        model = kerascnn.build(name, input_shape=shape, classes=4, **kwargs)
        data = np.random.default_rng(0).uniform(-1, 1, (4, *shape)).astype("float32")
        out = tmp_path / name
        export(model, out, formats=["tflite_float32", "tflite_int8"], representative_data=data,
               io_dtype=io_dtype, latency_runs=0)
        bundles.append(str(out))
    classpath, _ = _compile(tmp_path / "classes")
    code, out = _run(["java", "-cp", classpath, "dev.kerascnn.core.BundleCheck", *bundles])
    assert code == 0, out
    assert out.count("OK ") == 4, out
