"""The FastAPI application: built by `create_app(settings)`; the service is created once, in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from app.api import errors
from app.api.routes import router
from app.service import SearchService
from app.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = SearchService(settings.data_dir)
        app.state.service = svc
        await run_in_threadpool(svc.warm_up, settings.collection)
        yield

    app = FastAPI(title="ragqa", version="0.1.0", lifespan=lifespan)
    app.state.api_keys = {k: v.get_secret_value() for k, v in settings.api_keys.items()}
    app.state.default_collection = settings.collection
    errors.install(app)
    app.include_router(router)
    return app
