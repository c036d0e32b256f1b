"""The notification service's rules, free of Kafka and the database: which events notify whom
(``rules``), how a notice reads (``rendering``), which channels it takes (``recipients``), how
an email's delivery moves (``delivery``), and what is stored (``notices``, ``orders``)."""
