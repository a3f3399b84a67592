"""Routes for orders (being built)."""

from fastapi import APIRouter

router = APIRouter(tags=["orders"])
