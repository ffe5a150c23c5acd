"""AWS Elastic IP hook (minimal): re-associate an EIP allocation with this instance via boto3.

EC2's AssociateAddress is synchronous (no action to poll) and, with AllowReassociation, moves the
EIP away from the other node in one call. The EIP is NATed to the instance's private address by
AWS, so nothing is configured on the local interface. botocore's own "standard" retry mode does
the back-off on throttling/5xx, bounded by ``aws.max_attempts`` and the socket timeouts.

Status: tested only against moto's in-process EC2 emulation (see tests/test_aws_hook.py), never
against real AWS. The secondary-private-IP variant (AssignPrivateIpAddresses) is not implemented.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .base import ProviderError, SupersededError
from .config import AwsConfig

log = logging.getLogger("ngd-vip")


class AwsProvider:
    name = "aws"

    def __init__(self, config: AwsConfig) -> None:
        try:
            import boto3  # type: ignore[import-untyped]
            from botocore.config import Config  # type: ignore[import-untyped]
        except ImportError as exc:  # pragma: no cover - depends on the host
            raise ProviderError("provider aws needs boto3 (apt install python3-boto3)") from exc
        self.config = config
        self.ec2: Any = boto3.client(
            "ec2",
            region_name=config.region,
            endpoint_url=config.endpoint_url,
            config=Config(
                retries={"mode": "standard", "max_attempts": config.max_attempts},
                connect_timeout=config.timeout_seconds,
                read_timeout=config.timeout_seconds,
            ),
        )

    def _associated_instance(self) -> str | None:
        try:
            answer = self.ec2.describe_addresses(AllocationIds=[self.config.allocation_id])
        except Exception as exc:  # botocore raises ClientError/BotoCoreError; report either
            raise ProviderError(
                f"describe_addresses {self.config.allocation_id} (key aws.allocation_id): {exc}"
            ) from exc
        addresses = answer.get("Addresses", [])
        if not addresses:
            raise ProviderError(
                f"no Elastic IP with allocation id {self.config.allocation_id} (key aws.allocation_id)"
            )
        instance: str | None = addresses[0].get("InstanceId")
        return instance

    def routed_here(self) -> bool:
        return self._associated_instance() == self.config.instance_id

    def take_over(self, still_master: Callable[[], bool]) -> None:
        current = self._associated_instance()
        if current == self.config.instance_id:
            log.info("aws EIP %s already associated with %s", self.config.allocation_id, current)
            return
        if not still_master():
            raise SupersededError("left MASTER before the EIP was associated here")
        try:
            self.ec2.associate_address(
                AllocationId=self.config.allocation_id,
                InstanceId=self.config.instance_id,
                AllowReassociation=True,
            )
        except Exception as exc:
            raise ProviderError(
                f"associate_address {self.config.allocation_id} -> {self.config.instance_id}: {exc}"
            ) from exc
        log.info("aws EIP %s: %s -> %s", self.config.allocation_id, current, self.config.instance_id)
