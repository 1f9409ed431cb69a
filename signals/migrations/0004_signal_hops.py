from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('signals', '0003_strategy_choice'),
    ]

    operations = [
        migrations.AddField(
            model_name='signal',
            name='hops',
            field=models.JSONField(blank=True, default=dict, help_text='Hop timestamps from the venue tick to each broker answer (signals.hops).'),
        ),
    ]
