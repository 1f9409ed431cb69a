"""Prop-firm program of an account: owner, rule profile, phase, initial balance (prop/)."""

import django.core.validators
import django.db.models.deletion
from decimal import Decimal
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0003_account_states'),
        ('prop', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='account',
            name='initial_balance',
            field=models.DecimalField(blank=True, decimal_places=2, help_text="The program's starting balance (percent limits and the static maximum loss use it).", max_digits=20, null=True, validators=[django.core.validators.MinValueValidator(Decimal('0'))]),
        ),
        migrations.AddField(
            model_name='account',
            name='owner',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='accounts', to='prop.owner'),
        ),
        migrations.AddField(
            model_name='account',
            name='program_phase',
            field=models.CharField(choices=[('none', 'Not a prop-firm account'), ('evaluation', 'Evaluation (challenge / verification)'), ('funded', 'Funded')], default='none', max_length=16),
        ),
        migrations.AddField(
            model_name='account',
            name='rule_profile',
            field=models.ForeignKey(blank=True, help_text="The firm program's rules. Empty: the default profile (daily loss limit above, UTC midnight).", null=True, on_delete=django.db.models.deletion.PROTECT, related_name='accounts', to='prop.ruleprofile'),
        ),
        migrations.AlterField(
            model_name='auditlog',
            name='action',
            field=models.CharField(choices=[('halt', 'Halt'), ('resume', 'Resume'), ('enable', 'Enable'), ('disable', 'Disable'), ('limit_change', 'Risk limit change'), ('kill_switch_on', 'Kill switch on'), ('kill_switch_off', 'Kill switch off'), ('close_all', 'Close all positions'), ('reconcile', 'Reconciliation repair'), ('credentials', 'Credentials changed'), ('close_only', 'Close-only (prop-firm loss buffer)'), ('close_only_lifted', 'Close-only lifted'), ('firm_rule', 'Firm rule: flattened and halted')], db_index=True, max_length=32),
        ),
    ]
