"""Routes for photos (being built)."""

from fastapi import APIRouter

router = APIRouter(tags=["photos"])
