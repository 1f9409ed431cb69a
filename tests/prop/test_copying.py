"""prop.copying: which accounts of a fan-out keep a signal under the firms' copy rules."""

from prop.copying import CopyAccount, filter_fanout
from prop.rules import Rule


def acc(id, owner, firm="F", evaluation=False, across=True, evals=False):
    return CopyAccount(id, owner, firm, evaluation, across, evals)


def test_first_listed_owner_with_accounts_at_the_firm_wins():
    # owners listed 30, 10, 20; at firm F only 10 and 20 have accounts → owner 10; firm G: 30
    accounts = [acc(1, 20), acc(2, 10), acc(3, 10), acc(4, 30, firm="G"), acc(5, 20, firm="G")]
    kept, skips = filter_fanout(accounts, [30, 10, 20])
    assert kept == [2, 3, 4]
    assert {(s.account_id, s.rule) for s in skips} == {(1, Rule.COPY_ACROSS_OWNERS), (5, Rule.COPY_ACROSS_OWNERS)}


def test_firm_without_the_rule_or_without_firm_keeps_everyone():
    accounts = [acc(1, 1, across=False), acc(2, 2, across=False), acc(3, 1, firm=""), acc(4, 2, firm="")]
    kept, skips = filter_fanout(accounts, [])
    assert kept == [1, 2, 3, 4] and not skips


def test_unlisted_owner_and_missing_owner():
    accounts = [acc(1, 1), acc(2, 99, firm="H", across=False), acc(3, None, firm="K")]
    kept, skips = filter_fanout(accounts, [1])
    assert kept == [1]
    assert [(s.account_id, s.rule) for s in skips] == [(2, Rule.OWNER_NOT_IN_STRATEGY),
                                                       (3, Rule.OWNER_NOT_IN_STRATEGY)]
    kept, skips = filter_fanout([acc(1, 1), acc(3, None)], [])
    assert kept == [1] and [(s.account_id, s.rule) for s in skips] == [(3, Rule.OWNER_UNKNOWN)]


def test_without_a_list_owners_rank_by_id():
    kept, _ = filter_fanout([acc(5, 7), acc(6, 3)], [])
    assert kept == [6]


def test_one_evaluation_account_per_firm_and_owner_lowest_id():
    accounts = [acc(9, 1, evaluation=True, across=False, evals=True),
                acc(4, 1, evaluation=True, across=False, evals=True),
                acc(7, 1, evaluation=False, across=False, evals=True),  # funded: not limited
                acc(8, 2, evaluation=True, across=False, evals=True),
                acc(3, 1, firm="G", evaluation=True, across=False, evals=True)]
    kept, skips = filter_fanout(accounts, [])
    assert kept == [3, 4, 7, 8]
    assert [(s.account_id, s.rule) for s in skips] == [(9, Rule.COPY_BETWEEN_EVALUATIONS)]
    assert "account 4" in skips[0].detail


def test_both_rules_together():
    accounts = [acc(1, 2, evaluation=True, evals=True), acc(2, 1, evaluation=True, evals=True),
                acc(3, 1, evaluation=True, evals=True)]
    kept, skips = filter_fanout(accounts, [1, 2])
    assert kept == [2]
    assert {(s.account_id, s.rule) for s in skips} == {(1, Rule.COPY_ACROSS_OWNERS),
                                                       (3, Rule.COPY_BETWEEN_EVALUATIONS)}
