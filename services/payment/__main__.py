from services.payment.app import DEFINITION
from services.payment.settings import PaymentSettings
from shared.service import run

run(DEFINITION, PaymentSettings())
