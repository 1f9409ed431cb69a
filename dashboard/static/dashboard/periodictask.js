// django-celery-beat's periodic task form: show the crontab in words under the field. Its own
// template does this in an inline <script>, which the Content-Security-Policy blocks.
(function () {
  "use strict";
  var $ = django.jQuery;
  var script = document.getElementById("periodic-task-overrides");
  var readableCrontabs = JSON.parse(document.getElementById("readable-crontabs").textContent);
  var originalCrontabHelp = script.dataset.crontabHelp || "";
  $(".field-crontab_translation").hide();
  $(".field-crontab").change(function () {
    var help = $(".field-crontab .help");
    help.text(originalCrontabHelp);
    help.append("<br/>").append(document.createTextNode("Translation: " + readableCrontabs[$("#id_crontab").val()]));
  });
})();
