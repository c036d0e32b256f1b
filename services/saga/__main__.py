from services.saga.app import create_app
from shared.service import run

run(create_app())
