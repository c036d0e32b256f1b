from services.account.app import create_app
from shared.service import run

run(create_app())
