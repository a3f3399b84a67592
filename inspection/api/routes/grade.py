"""Routes for grade (being built)."""

from fastapi import APIRouter

router = APIRouter(tags=["grade"])
