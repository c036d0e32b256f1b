from services.saga.app import DEFINITION
from services.saga.settings import SagaSettings
from shared.service import run

run(DEFINITION, SagaSettings())
