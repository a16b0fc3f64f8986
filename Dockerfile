# syntax=docker/dockerfile:1
# One image for every ecgmon service; docker-compose.yml picks the subcommand:
#   docker run --rm ecgmon:0.1.0 replay --loop
# Build stage: install the project and its wheels into a venv. Runtime stage:
# only that venv on a slim base, run as an unprivileged user.

FROM python:3.11.13-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# .dockerignore keeps .venv, .git, tests, data and caches out of the context.
COPY . .
RUN pip install .
# compile the signal core's numba kernels once, at build time (~30 s), into a cache the
# services read at start-up instead of compiling (from /tmp: the installed copy, not /src)
ENV NUMBA_CACHE_DIR=/opt/numba-cache
RUN cd /tmp && python -c 'from detector.core.monitor import warm_up; warm_up()'


FROM python:3.11.13-slim-bookworm AS runtime

# /cache is the PhysioNet download cache; created here and owned by the
# service user so a named volume mounted on it inherits that ownership.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/ecgmon ecgmon \
    && mkdir -p /cache \
    && chown ecgmon:ecgmon /cache

COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=ecgmon:ecgmon /opt/numba-cache /opt/numba-cache

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    NUMBA_CACHE_DIR=/opt/numba-cache \
    ECGMON_CACHE_DIR=/cache

USER ecgmon:ecgmon
WORKDIR /home/ecgmon

ENTRYPOINT ["ecgmon"]
CMD ["--help"]
