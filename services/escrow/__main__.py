from services.escrow.app import DEFINITION
from services.escrow.settings import EscrowSettings
from shared.service import run

run(DEFINITION, EscrowSettings())
