SECRET_KEY=dev-secret
DEBUG=false
ALLOWED_HOSTS=shop.example.com
