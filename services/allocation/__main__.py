from libs.service_host import run_service
from services.allocation.service import SERVICE

if __name__ == "__main__":
    run_service(SERVICE)
