"""Routes for health (being built)."""

from fastapi import APIRouter

router = APIRouter(tags=["health"])
