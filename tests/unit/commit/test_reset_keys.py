"""Which Redis keys a reset removes: the job's, never those of a job whose name starts alike."""

from service.commit.reset import is_job_key


def test_job_keys_belong_to_one_job_only() -> None:
    assert is_job_key("dstreams:{j:t:0}:ledger", "j")
    assert is_job_key("dstreams:{j:x:t:0}:s1:state", "j:x")
    assert not is_job_key("dstreams:{j:x:t:0}:s1:state", "j")
    assert is_job_key("dstreams:j:meta", "j")
    assert is_job_key("dstreams:j:s3:slice:1000", "j")
    assert not is_job_key("dstreams:j:x:meta", "j")
    assert not is_job_key("dstreams:jj:meta", "j")
