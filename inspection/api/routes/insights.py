"""Routes for insights: review queue and dashboard statistics (being built)."""

from fastapi import APIRouter

router = APIRouter(tags=["insights"])
