from services.account.app import DEFINITION
from services.account.settings import AccountSettings
from shared.service import run

run(DEFINITION, AccountSettings())
