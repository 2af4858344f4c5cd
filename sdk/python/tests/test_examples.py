"""The Python examples, run end to end as real processes against a real Fabric."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

from conftest import REPO, python_env

EXAMPLES = REPO / "examples" / "python"


def test_hello_world_across_two_processes(fabric):
    env = python_env(fabric.address, HELLO_DELAY="0")
    printer = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "hello" / "stream_printer_agent.py")], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deployer = subprocess.run([sys.executable, str(EXAMPLES / "hello" / "my_first_agent.py")],
                                  env=env, capture_output=True, text=True, timeout=30)
    finally:
        printer.send_signal(signal.SIGTERM)
        printer_output, printer_log = printer.communicate(timeout=15)
    assert deployer.returncode == 0, deployer.stderr
    assert deployer.stdout.splitlines() == [
        "Hello world from Deploy!",
        "Hello world from HelloWorldGenerator!",
        "StreamPrinter printed 27 characters",
    ]
    assert printer.returncode == 0, printer_log
    assert printer_output.splitlines() == [
        "Hello world from StreamPrinterAgent's StreamPrinter!",
        "Hello world through stream!",
    ]


def test_basic_sample(fabric):
    result = subprocess.run([sys.executable, str(EXAMPLES / "basic" / "basic_sample.py")],
                            env=python_env(fabric.address), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()

    # Every item generated once, processed once and in key order.
    assert sorted(int(l.split()[-1]) for l in lines if l.startswith("Generating")) == list(
        range(28))
    processed = [int(l.split()[-1]) for l in lines if l.startswith("Processing")]
    assert processed == list(range(28))
    # Batches of 10, then the final partial batch.
    batches = [l for l in lines if l.startswith("Received batch")]
    assert batches == ["Received batch of 10 messages."] * 2 + ["Received batch of 8 messages."]
    assert ",".join(f"message {k}" for k in range(20, 28)) in lines
    # The cycle runs to its end.
    assert [l for l in lines if l.startswith("Node 2")] == [
        f"Node 2 received {n}." for n in range(1, 10)]
    assert [l for l in lines if l.startswith("Node 1")] == [
        f"Node 1 received {n}." for n in range(3, 12)]
    # The calls.
    numbers = [l for l in lines if l.startswith("Random number: ")]
    assert len(numbers) == 2 and all(1 <= int(l.split()[-1]) <= 99 for l in numbers)
    assert any(re.fullmatch(r"Random numbers: \d+ \+ \d+", l) for l in lines)
    assert "Params: 4" in lines
    assert "DoSomething called: 123" in lines
    assert "DoSomethingAsync called: 456" in lines
    assert lines[-1] == "Basic sample done."


def test_restart_pipeline_deploys_once_with_the_recorded_deploy(fabric):
    env = python_env(fabric.address, X_PERPER_RECORD_DEPLOY="1")
    runs = [subprocess.run([sys.executable, str(EXAMPLES / "restart" / "average_pipeline.py")],
                           env=env, capture_output=True, text=True, timeout=60) for _ in range(2)]
    for result in runs:
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["Average of 100 readings: 50.5"]
    assert "Deploy already ran" not in runs[0].stderr
    assert ("Deploy already ran on this Fabric (execution AveragePipeline-deploy-deploy)"
            in runs[1].stderr)
