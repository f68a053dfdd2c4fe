"""The Docker Engine API on orch's node (ORCH_RUN/docker.sock): docker's clients (the docker
CLI, docker-py, docker-compose v1) served by the agent's own operations, translated. See
ARCHITECTURE.md ("The Docker Engine API")."""
