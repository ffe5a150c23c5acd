"""The aws provider hook against moto's in-process EC2 emulation (the closest thing to EC2 that
exists here; it checks request shapes and EIP association semantics, not real AWS timing)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3  # type: ignore[import-untyped]
import moto
import pytest

REGION = "eu-central-1"
MOTO_AMI = "ami-03cf127a"  # one of the AMIs moto ships (moto/ec2/resources/amis.json.gz)


@pytest.fixture()
def ec2(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # moto intercepts botocore in-process: throw-away credentials, nothing leaves the process.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with moto.mock_aws():
        yield boto3.client("ec2", region_name=REGION)


def two_instances_and_an_eip(ec2: Any) -> tuple[str, str, str]:
    reservation = ec2.run_instances(ImageId=MOTO_AMI, MinCount=2, MaxCount=2, InstanceType="t3.micro")
    me, peer = (i["InstanceId"] for i in reservation["Instances"])
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    ec2.associate_address(AllocationId=allocation, InstanceId=peer)
    return me, peer, allocation


def associated(ec2: Any, allocation: str) -> str | None:
    address = ec2.describe_addresses(AllocationIds=[allocation])["Addresses"][0]
    instance: str | None = address.get("InstanceId")
    return instance


def aws_env(make_env: Any, me: str, allocation: str) -> Any:
    raw = (
        'provider = "aws"\nmetrics_dir = "{metrics}"\n'
        f'[aws]\nregion = "{REGION}"\nallocation_id = "{allocation}"\ninstance_id = "{me}"\n'
    )
    env = make_env("aws", raw="")
    env.config.write_text(raw.format(metrics=env.metrics_dir))
    return env


def test_master_reassociates_the_eip(ec2: Any, make_env: Any, run: Any) -> None:
    me, peer, allocation = two_instances_and_an_eip(ec2)
    env = aws_env(make_env, me, allocation)
    assert associated(ec2, allocation) == peer
    result = run("INSTANCE", "VI_1", "MASTER", "150")
    assert result.code == 0, result.logs
    assert associated(ec2, allocation) == me
    assert env.metrics().provider_errors == {"aws": 0}
    assert run("INSTANCE", "VI_1", "MASTER").code == 0  # idempotent
    assert associated(ec2, allocation) == me


def test_reconcile_moves_the_eip_back(ec2: Any, make_env: Any, run: Any) -> None:
    me, peer, allocation = two_instances_and_an_eip(ec2)
    aws_env(make_env, me, allocation)
    assert run("INSTANCE", "VI_1", "MASTER").code == 0
    ec2.associate_address(AllocationId=allocation, InstanceId=peer, AllowReassociation=True)
    assert run("reconcile", "--instance", "VI_1", "--no-fix").code == 1
    assert run("reconcile", "--instance", "VI_1").code == 0
    assert associated(ec2, allocation) == me


def test_unknown_allocation_fails_and_counts(ec2: Any, make_env: Any, run: Any) -> None:
    me, _, _ = two_instances_and_an_eip(ec2)
    env = aws_env(make_env, me, "eipalloc-00000000000000000")
    result = run("INSTANCE", "VI_1", "MASTER")
    assert result.code == 1
    assert "aws.allocation_id" in result.logs[-1]["error"]
    assert env.metrics().provider_errors == {"aws": 1}
