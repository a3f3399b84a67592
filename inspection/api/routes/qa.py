"""Routes for qa (being built)."""

from fastapi import APIRouter

router = APIRouter(tags=["qa"])
