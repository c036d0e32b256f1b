from services.notification.app import DEFINITION
from services.notification.settings import NotificationSettings
from shared.service import run

run(DEFINITION, NotificationSettings())
