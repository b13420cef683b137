from django.db import migrations, models


class Migration(migrations.Migration):
    """The index on (queue, status) gets the function too, so that counting every record by queue,
    status and function (the dashboard's and the metrics' one query over the whole ledger) reads the
    index alone, in order, instead of the table."""

    dependencies = [
        ("jobs", "0003_pause_queue_permission"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="job", name="jobs_queue_status_idx"),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(fields=["queue", "status", "function"], name="jobs_queue_status_fn_idx"),
        ),
    ]
