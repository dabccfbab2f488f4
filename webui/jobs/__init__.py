"""The job layer: every generation is a Job in one queue, fair between owners, with a history.

No gradio here. The UI, the REST API and the CLI submit jobs and read their own job's state;
engines report to the job they run through a :class:`JobControl` and check its cancel flag.

Adding a kind (e.g. "extras" upscaling) takes one function and one ``register`` call::

    def run_extras(request: ExtrasRequest, control: JobControl) -> JobResult:
        for i, image in enumerate(request.images):          # per image / frame / batch:
            if control.cancelled():                          #   stop when cancelled
                return JobResult(value=..., paths=done, interrupted=True)
            control.report(i, len(request.images), text="upscaling")   # progress (+ preview=PIL)
            path = next_output_path(...)
            control.add_output(path, infotext)               #   record the output, then
            save_png(upscaled, path, infotext)               #   write it atomically
            control.batch_boundary()                         #   let other owners' jobs run
        return JobResult(value=result, paths=done, infotexts=infos)

    services.jobs.register("extras", run_extras, check=validate_extras)   # check raises ValueError

    job = services.jobs.submit("extras", request, owner=user)   # UI / API / CLI; or .run(...) to wait
    job.progress(), services.jobs.position(job), job.cancel(), job.wait(), job.result.value

Built-in kinds (txt2img, img2img, inpaint, talking_head) are registered in ``webui.jobs.runners``.
"""

from webui.jobs.history import History, HistoryEntry
from webui.jobs.job import CancelReason, Job, JobCancelled, JobControl, JobResult, JobStatus
from webui.jobs.queue import JobQueue, request_params

__all__ = ["CancelReason", "History", "HistoryEntry", "Job", "JobCancelled", "JobControl", "JobQueue", "JobResult",
           "JobStatus", "request_params"]
