"""Routes for refunds (being built)."""

from fastapi import APIRouter

router = APIRouter(tags=["refunds"])
