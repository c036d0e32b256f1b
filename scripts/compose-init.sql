-- docker-compose only: one database per service.
CREATE DATABASE account;
CREATE DATABASE payment;
CREATE DATABASE escrow;
CREATE DATABASE notification;
CREATE DATABASE saga;
