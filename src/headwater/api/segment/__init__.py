"""Segment's Public API, mounted at ``/segment/v1``: its paths, bodies and answers for the
objects Headwater has, so Segment's SDKs and Terraform provider can point at Headwater.

A thin layer over the stores ``/api/v1`` uses: every rule (names, settings, secrets, write
keys) is theirs; these modules only speak Segment's shapes. docs/public-api.md lists which
operations exist and how they differ from Segment's.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from headwater.api.segment import (
    audiences,
    catalog,
    destinations,
    filters,
    functions,
    regulations,
    sources,
    spaces,
    subscriptions,
    tracking_plans,
    transformations,
    warehouses,
    workspace,
)
from headwater.api.segment.envelope import negotiate

PREFIX = "/segment/v1"

router = APIRouter(dependencies=[Depends(negotiate)])
router.include_router(workspace.router)
router.include_router(sources.router)
router.include_router(destinations.router)
router.include_router(subscriptions.router)
router.include_router(catalog.router)
router.include_router(filters.router)
router.include_router(tracking_plans.router)
router.include_router(regulations.router)
router.include_router(transformations.router)
router.include_router(warehouses.router)
router.include_router(functions.router)
router.include_router(spaces.router)
router.include_router(audiences.router)
