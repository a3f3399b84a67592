"""Routes for returns (being built)."""

from fastapi import APIRouter

router = APIRouter(tags=["returns"])
